"""Entry points and wiring: the CLI, the HTTP gateway, the one-process runtime, the composition
root (`bootstrap`), request validation and the embedded NATS and PostgreSQL servers.

May import: everything in `shared`. Nothing in `shared` imports it.
"""
