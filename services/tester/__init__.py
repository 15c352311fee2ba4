"""The tester service (see handlers.py for what it does)."""
