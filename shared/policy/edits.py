"""Edits a model asks for, as search/replace blocks: parse, check paths, apply.

Why search/replace blocks (aider style) rather than unified diffs: models get line numbers
and hunk headers wrong far more often than they get a few lines of existing code wrong, and a
block names the text it replaces, so it can be found again even after the file moved under it.
Each block stands alone, so a failure is per block: only the blocks that failed go back to
the model with their error, and the ones that applied stay applied.

The model writes, inside its JSON answer, a list of objects:

    {"path": "pkg/mod.py", "search": "<exact existing lines>", "replace": "<new lines>"}

An empty `search` creates the file (or appends to it when it exists).

Matching: exact text first; then line by line ignoring trailing whitespace and blank lines;
then also ignoring indentation, re-indenting the replacement by the difference (unless the
replacement already has the file's indentation: then only the search text was off). A search that
matches more than one place fails rather than guessing. A `.py` file that parsed before and
no longer parses after its blocks is left untouched and all its blocks are reported failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from shared.common.pyparse import parse_python

from shared.common.fs import UnsafePath, resolve_inside, write_inside

__all__ = ["ApplyResult", "Edit", "FailedEdit", "UnsafePath", "apply_edits", "replace_once", "resolve_inside"]


class Edit(BaseModel):
    """One search/replace block."""

    path: str
    search: str = ""
    replace: str = ""


@dataclass(frozen=True)
class FailedEdit:
    edit: Edit
    error: str


@dataclass
class ApplyResult:
    applied: list[str] = field(default_factory=list)  # files changed, relative, in first-touched order
    failed: list[FailedEdit] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class _NoMatch(Exception):
    pass


def replace_once(content: str, search: str, replace: str) -> str:
    """`content` with the one place matching `search` replaced (see module docstring for the
    matching levels). Raises _NoMatch with a message for the model when there is no single match."""
    if not search:
        if not content:
            return replace
        return content + ("" if content.endswith("\n") else "\n") + replace
    count = content.count(search)
    if count == 1:
        return content.replace(search, replace, 1)
    if count > 1:
        raise _NoMatch(f"the search text matches {count} places; include more surrounding lines so it is unique")
    for normalize, reindent in ((str.rstrip, False), (str.strip, True)):
        result = _tolerant_replace(content, search, replace, normalize, reindent)
        if result is not None:
            return result
    raise _NoMatch("the search text was not found in the file (even ignoring whitespace); "
                   "copy the lines exactly as they are in the current file")


def _tolerant_replace(content: str, search: str, replace: str,
                      normalize: Callable[[str], str], reindent: bool) -> str | None:
    lines = content.splitlines(keepends=True)
    wanted = [normalize(s) for s in search.splitlines() if s.strip()]
    if not wanted:
        return None
    have = [(i, normalize(line)) for i, line in enumerate(lines) if line.strip()]
    hits = [k for k in range(len(have) - len(wanted) + 1)
            if all(have[k + j][1] == wanted[j] for j in range(len(wanted)))]
    if not hits:
        return None
    if len(hits) > 1:
        raise _NoMatch(f"the search text matches {len(hits)} places (ignoring whitespace); "
                       "include more surrounding lines so it is unique")
    first, last = have[hits[0]][0], have[hits[0] + len(wanted) - 1][0]
    newline = "\r\n" if lines[first].endswith("\r\n") else "\n"
    new = replace.splitlines()
    if reindent:
        search_first = next(s for s in search.splitlines() if s.strip())
        replace_first = next((s for s in new if s.strip()), "")
        # The replacement may be written in the file's indentation even though the search text
        # was not: shifting it by the search text's error would indent it twice.
        if _indent(replace_first) != _indent(lines[first]):
            new = _reindent(new, _indent(search_first), _indent(lines[first]))
    block = "".join(line + newline for line in new)
    if not lines[last].endswith(("\n", "\r")) and block.endswith(newline):
        block = block[: -len(newline)]  # the match ended the file without a newline; keep it so
    return "".join(lines[:first]) + block + "".join(lines[last + 1:])


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _reindent(lines: list[str], have: str, want: str) -> list[str]:
    """Move lines indented relative to `have` so they are relative to `want`."""
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif line.startswith(have):
            out.append(want + line[len(have):])
        else:
            out.append(want + line.lstrip())
    return out


def _parses(source: str) -> str | None:
    try:
        parse_python(source)
    except (SyntaxError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def apply_edits(repo: Path, edits: list[Edit]) -> ApplyResult:
    """Apply `edits` to the working copy at `repo`, in order, file by file.

    Every path is checked with `resolve_inside` before anything is written: one unsafe path
    raises UnsafePath and nothing changes. Otherwise each block applies or lands in `failed`
    with a message meant for the model; a file is written only once, after all its blocks.
    """
    targets = {edit.path: resolve_inside(repo, edit.path) for edit in edits}
    root = repo.resolve()
    result = ApplyResult()
    by_file: dict[Path, list[Edit]] = {}
    for edit in edits:
        by_file.setdefault(targets[edit.path], []).append(edit)
    for target, file_edits in by_file.items():
        rel = target.relative_to(root).as_posix()
        _apply_file(root, target, rel, file_edits, result)
    return result


def _apply_file(root: Path, target: Path, rel: str, edits: list[Edit], result: ApplyResult) -> None:
    exists = target.exists()
    if exists and not target.is_file():
        result.failed.extend(FailedEdit(e, f"{rel} is a directory, not a file") for e in edits)
        return
    try:
        original = target.read_bytes().decode("utf-8") if exists else ""
    except UnicodeDecodeError:
        result.failed.extend(FailedEdit(e, f"{rel} is not a UTF-8 text file") for e in edits)
        return
    content, done = original, []
    for edit in edits:
        if not exists and not content and edit.search:
            result.failed.append(FailedEdit(edit, f"{rel} does not exist; use an empty search to create it"))
            continue
        try:
            content = replace_once(content, edit.search, edit.replace)
            done.append(edit)
        except _NoMatch as exc:
            result.failed.append(FailedEdit(edit, f"{rel}: {exc}"))
    if not done or content == original and exists:
        return
    if target.suffix == ".py" and (not exists or _parses(original) is None):
        problem = _parses(content)
        if problem is not None:
            result.failed.extend(
                FailedEdit(e, f"{rel} would no longer parse after these edits ({problem}); none of its edits were kept")
                for e in done
            )
            return
    write_inside(root, rel, content)
    result.applied.append(rel)
