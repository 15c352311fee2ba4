"""Messaging: the JetStream stream (`bus`), the outbox relay that publishes the store's log
(`relay`) and the durable-consumer runtime that hands events to service handlers (`consumer`).

May import: store, events, ports, common. Never an adapter, an engine or an entry point.
"""
