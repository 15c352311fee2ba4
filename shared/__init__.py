"""Repo Pilot's shared code: events, store, bus, projections, engines and adapters."""
