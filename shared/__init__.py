"""Repo Pilot's shared code, grouped by role. Lower layers never import higher ones
(checked by `import-linter`, contracts in pyproject.toml):

    app        entry points: CLI, HTTP gateway, one-process runtime, bootstrap, embedded servers
    messaging  the bus: JetStream stream, outbox relay, durable consumers
    engines    the work behind the services: `rules` (offline) and `llm` (OpenAI-compatible)
    adapters   the outside world: git, workspaces, forges, sandboxes, target environments, analyzers
    store      the event store (source of truth) and the projections folded from it
    policy     pure pipeline decisions: run context, review and merge gate, model edits
    ports      the interfaces (Protocols) services depend on, their value types and errors
    events     the event model: envelope, typed payloads, registry, upcasters
    common     settings, telemetry, redaction: used by every layer, imports none of them
"""
