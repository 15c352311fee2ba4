"""The executor's decisions about a run's patch series (pure): which improvement is worth
implementing again on top of the others, why a drafted diff was refused, what its commit says."""

from __future__ import annotations

from shared.events import Improvement

# Fixes a tool derives from the code itself (ruff, codemods): implementing one again on top of the
# earlier improvements is the same fix, rebased.
REDERIVED = ("lint:", "lint-unsafe:", "codemod:", "ruff:")

_UNREADABLE = ("corrupt patch", "malformed patch", "patch fragment without header", "No valid patches",
               "unrecognized input")


def rederived(improvement: Improvement) -> bool:
    """A fix a tool derives from the code: made again on top of the series when its draft conflicts."""
    return (improvement.rule or "").startswith(REDERIVED)


def rejection_reason(stderr: str, again: str = "") -> str:
    """Why a drafted diff did not apply on the run branch: a real overlap with an earlier
    improvement, or a patch git could not read (a bug on our side, named as such); `again` is what
    became of implementing it once more on top (empty when that was not tried or made nothing)."""
    detail = stderr.strip()[:300]
    if any(s in stderr for s in _UNREADABLE):
        reason = f"its patch could not be applied as built (not a conflict): {detail}"
    else:
        reason = f"conflicts with an earlier improvement: {detail}"
    return reason + (f"; implemented again on top of them: {again}" if again else "")


def commit_message(improvement: Improvement, done: str) -> str:
    """The improvement's commit message; `done` is what the engine says it did (e.g. which sites, and why)."""
    done_line = f"\n\nWhat was done: {done}" if done else ""
    return (f"{improvement.category}: {improvement.title}\n\n{improvement.rationale}{done_line}\n\n"
            f"Repo-Pilot-Improvement: {improvement.id}")
