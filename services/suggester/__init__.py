"""The suggester service (see handlers.py for what it does)."""
