"""The seven services. Each folder: main.py (subscriptions), handlers.py (plain async functions)."""

SERVICES: tuple[str, ...] = ("analyzer", "suggester", "executor", "reviewer", "tester", "merger", "generator")
