"""How big an artifact may grow inside an event payload (so no legitimate run meets the store's
event size bound, REPO_PILOT_MAX_EVENT_BYTES, 900 kB by default).

Sizes are in characters of the text; JSON escaping can double them, which the figures allow for.
Text that only informs (model answers, docs, tool output) is clipped with a note saying so;
patches are never clipped (a cut patch would not apply): an improvement whose patch does not fit
is rejected with the reason instead.
"""

from __future__ import annotations

MAX_TEXT_CHARS = 100_000  # one model answer or one generated document
MAX_PATCH_CHARS = 120_000  # one improvement's patch
MAX_SERIES_CHARS = 300_000  # all patches of one run (ChangesCommitted carries them together)


def clip(text: str, limit: int = MAX_TEXT_CHARS, what: str = "text") -> str:
    """`text` unchanged when it fits, else its head and a note saying how much was left out."""
    if len(text) <= limit:
        return text
    note = f"\n… [{what} cut at {limit:,} of {len(text):,} characters to fit in an event]"
    return text[: max(limit - len(note), 0)] + note


def patch_refusal(patch_chars: int, series_chars: int) -> str | None:
    """Why a patch cannot join the run's series (None when it fits), given the series so far."""
    if patch_chars > MAX_PATCH_CHARS:
        return (f"the change is too large to record: its patch is {patch_chars:,} characters "
                f"(at most {MAX_PATCH_CHARS:,} per improvement)")
    if series_chars + patch_chars > MAX_SERIES_CHARS:
        return (f"the run's patch series would exceed {MAX_SERIES_CHARS:,} characters with this "
                f"{patch_chars:,}-character patch; it is left for a later run")
    return None
