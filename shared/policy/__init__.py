"""Pipeline policy: pure decisions with no I/O. The run context folded from a stream (`run`),
the review score and the merge gate (`review`), and what a model edit may touch (`edits`).

May import: ports, events, common. Never an adapter, the store, messaging or an entry point.
"""
