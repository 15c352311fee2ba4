"""The merger service (see handlers.py for what it does)."""
