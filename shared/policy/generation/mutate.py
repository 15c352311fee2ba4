"""Mutants of the lines a feature adds: its new names stay, their behaviour changes (pure).

Tests that fail without a feature only because they cannot import its new name prove nothing
about behaviour. A mutant keeps every name the feature adds and changes one thing on one added
line: a comparison flipped, an arithmetic or boolean operator swapped, a constant changed, a
condition negated, a returned value replaced by None. Tests that test the feature fail on it.

Why not mutmut or cosmic-ray: both mutate a whole module in place and run their own test
command in the project's directory; here each mutant must go through the task's own runner as
a feature.patch, and only the lines the feature adds are mutated. Python's own `tokenize` and
`ast` do that in ~100 lines; every mutant is parsed, and one that does not parse or leaves the
syntax tree unchanged is dropped.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass

_OPS = {"+": "-", "-": "+", "*": "/", "/": "*", "//": "*", "%": "*", "==": "!=", "!=": "==", "<": ">=",
        ">": "<=", "<=": ">", ">=": "<", "+=": "-=", "-=": "+=", "*=": "/=", "&": "|", "|": "&"}
_NAMES = {"and": "or", "or": "and", "True": "False", "False": "True"}


@dataclass(frozen=True)
class Mutant:
    path: str
    line: int
    description: str
    source: str  # the whole mutated file


def _offsets(text: str) -> list[int]:
    starts, total = [0], 0
    for line in text.splitlines(keepends=True):
        total += len(line)
        starts.append(total)
    return starts


def _replace(text: str, starts: list[int], start: tuple[int, int], end: tuple[int, int], new: str) -> str:
    a, b = starts[start[0] - 1] + start[1], starts[end[0] - 1] + end[1]
    return text[:a] + new + text[b:]


def _token_edits(text: str, lines: set[int]):
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return
    for tok in tokens:
        if tok.start[0] not in lines:
            continue
        if tok.type == tokenize.OP and tok.string in _OPS:
            yield tok.start, tok.end, _OPS[tok.string], f"{tok.string!r} -> {_OPS[tok.string]!r}"
        elif tok.type == tokenize.NAME and tok.string in _NAMES:
            yield tok.start, tok.end, _NAMES[tok.string], f"{tok.string} -> {_NAMES[tok.string]}"
        elif tok.type == tokenize.NUMBER and tok.string.isdigit():
            new = str(int(tok.string) + 1)
            yield tok.start, tok.end, new, f"{tok.string} -> {new}"


def _tree_edits(tree: ast.AST, text: str, lines: set[int]):
    segment_lines = text.splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and node.value is not None and node.lineno in lines:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                v = node.value
                yield (v.lineno, v.col_offset), (v.end_lineno, v.end_col_offset), "None", "return value -> None"
        elif isinstance(node, (ast.If, ast.While)) and node.test.lineno in lines:
            t = node.test
            original = ast.get_source_segment(text, t) or ""
            if "\n" not in original and segment_lines:
                yield (t.lineno, t.col_offset), (t.end_lineno, t.end_col_offset), f"not ({original})", "condition negated"


def all_mutants(path: str, text: str, lines: set[int]) -> list[Mutant]:
    """Every mutant of `text` (the file at `path` with the feature) on `lines` (pure)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    original = ast.dump(tree)
    starts = _offsets(text)
    found, seen = [], set()
    for start, end, new, what in [*_token_edits(text, lines), *_tree_edits(tree, text, lines)]:
        mutated = _replace(text, starts, start, end, new)
        try:
            dumped = ast.dump(ast.parse(mutated))
        except SyntaxError:
            continue  # `*args` -> `/args` and the like
        if dumped == original or dumped in seen:
            continue
        seen.add(dumped)
        found.append(Mutant(path, start[0], f"{path}:{start[0]}: {what}", mutated))
    return found


def spread(found: list[Mutant], limit: int) -> list[Mutant]:
    """At most `limit` mutants, one per line before a second on any line, in file order (pure)."""
    by_line: dict[tuple[str, int], list[Mutant]] = {}
    for m in found:
        by_line.setdefault((m.path, m.line), []).append(m)
    picked, round_ = [], 0
    while len(picked) < limit and any(len(group) > round_ for group in by_line.values()):
        for key in sorted(by_line):
            if len(by_line[key]) > round_ and len(picked) < limit:
                picked.append(by_line[key][round_])
        round_ += 1
    return picked
