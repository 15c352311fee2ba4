"""The reviewer service (see handlers.py for what it does)."""
