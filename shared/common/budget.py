"""What every scanner and parser leaves alone: files over a size limit and binary files.

One rule for the rules engine's facts, the model's scan, the analyzers (ruff, bandit, the secrets
scan): a 7 MB generated module or a 60 MB asset must cost a `stat` and at most one 8 KB read, never
a parse. Callers report what they skipped and why.
"""

from __future__ import annotations

from pathlib import Path

MAX_FILE_BYTES = 1_000_000  # larger files are generated code, data or vendored bundles
SNIFF_BYTES = 8192


def skip_reason(path: Path, limit: int = MAX_FILE_BYTES) -> str | None:
    """Why `path` must not be read whole ("too large: N bytes", "binary", "unreadable: …"), or None."""
    try:
        size = Path(path).stat().st_size
        if size > limit:
            return f"too large: {size} bytes (limit {limit})"
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return "binary" if b"\x00" in head else None
