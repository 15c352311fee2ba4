"""The executor service (see handlers.py for what it does)."""
