"""The analyzer service (see handlers.py for what it does)."""
