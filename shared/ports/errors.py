"""Errors raised through the ports: what a user can cause, as opposed to bugs (which raise anything else)."""

from __future__ import annotations


class ChangeRejectedError(Exception):
    """An improvement the engine cannot implement safely; the reason goes into ChangeRejected."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class StepError(Exception):
    """A failure the user can cause (bad repo, model junk, budget spent): recorded, not retried."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint
