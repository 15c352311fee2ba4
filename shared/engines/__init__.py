"""Engines: the work behind the services (DESIGN section 4). `rules` is offline, `llm` any OpenAI-compatible model.

May import: adapters, store (types), policy, ports, events, common. Never messaging or an entry point.
"""
