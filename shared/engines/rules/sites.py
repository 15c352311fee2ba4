"""Where a fix applies, site by site (shared/policy/behaviour.py decides; this reads the files).

ruff and the codemods fix a whole file at once. A site whose fix would change behaviour without a
context that justifies it (a `random` value that feeds no secret, a yoda comparison in a test, `== None`
on a value of unknown type) is held back: marked `# noqa` for the length of the fix, then unmarked,
so the file's other sites are still fixed and the held one is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.adapters.analyzers import Finding
from shared.policy.behaviour import Verdict, judge_site

_HOLD = "  # noqa: {code}  # repo-pilot-hold"


def _source(root: Path, rel: str, cache: dict[str, str | None]) -> str | None:
    if rel not in cache:
        try:
            cache[rel] = (root / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            cache[rel] = None
    return cache[rel]


def judge(root: Path, findings: list[Finding], key=lambda f: f.code) -> list[tuple[Finding, Verdict]]:
    """Each finding with the verdict on fixing it where it is (unreadable files are not fixed)."""
    cache: dict[str, str | None] = {}
    out = []
    for f in findings:
        source = _source(root, f.path, cache)
        if source is None:
            out.append((f, Verdict(False, f"{f.path}: not readable as UTF-8 text")))
            continue
        out.append(
            (f, judge_site(key(f), source, f.path, f.line, ruff_unsafe=f.unsafe_fix and not f.fixable))
        )
    return out


def split_lint(root: Path, findings: list[Finding]) -> tuple[list[Finding], list[str]]:
    """The lint findings whose fix may be applied where they are, and the reasons for the others
    (only findings that have a fix are judged; the rest pass through unchanged)."""
    fixable = [f for f in findings if f.fixable or f.unsafe_fix]
    verdicts = dict(judge(root, fixable))
    keep = [f for f in findings if f not in verdicts or verdicts[f].ok]
    held = [f"{f.code} {v.reason}" for f, v in verdicts.items() if not v.ok]
    return keep, held


@contextmanager
def holding(root: Path, findings: list[Finding]) -> Iterator[None]:
    """Hide `findings` from ruff while the block runs: `# noqa: CODE` on their lines, removed after."""
    by_file: dict[str, dict[int, set[str]]] = {}
    for f in findings:
        by_file.setdefault(f.path, {}).setdefault(f.line, set()).add(f.code)
    markers: dict[str, list[str]] = {}
    for rel, lines in by_file.items():
        path = root / rel
        text = path.read_text(encoding="utf-8").split("\n")
        for n, codes in lines.items():
            if 0 < n <= len(text) and not text[n - 1].rstrip().endswith("\\"):
                marker = _HOLD.format(code=",".join(sorted(codes)))
                text[n - 1] += marker
                markers.setdefault(rel, []).append(marker)
        path.write_text("\n".join(text), encoding="utf-8")
    try:
        yield
    finally:
        for rel, marks in markers.items():
            path = root / rel
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                for marker in marks:
                    text = text.replace(marker, "", 1)
                path.write_text(text, encoding="utf-8")
