"""Lint and modernisation: ruff's own fixes, grouped by rule family, as improvements (pure) and applied.

A family's *safe* fixes (ruff promises they keep behaviour) make one improvement; its *unsafe*
fixes (they may change behaviour, e.g. `== None` -> `is None` for a class overriding `__eq__`)
make another, which `implement` keeps only when the repository's own tests still pass with it
alone (see `validate.py`). The repository's own ruff configuration is respected: what it ignores
is never "fixed" (`respect_config=True` in the analyzers).
"""

from __future__ import annotations

import difflib
import io
import tokenize
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from shared.adapters.analyzers import Finding, parse_failure_in, ruff_fix, run_ruff, target_version
from shared.adapters.git import git
from shared.adapters.project_tools import line_length
from shared.engines.rules.sites import holding
from shared.events import Improvement
from shared.policy.behaviour import changes_behaviour
from shared.ports.errors import ChangeRejectedError


@dataclass(frozen=True)
class Family:
    prefix: str
    name: str
    category: str
    why: str


# Ordered: the first family a code matches is its family.
FAMILIES: tuple[Family, ...] = (
    Family("F", "pyflakes", "compliance",
           "pyflakes finds code that is dead or wrong: unused imports and variables, f-strings "
           "without placeholders, redefined names"),
    Family("E7", "pycodestyle statements", "compliance",
           "comparisons to None/True/False with `==`, type comparisons and lambdas assigned to names "
           "behave surprisingly and read as mistakes"),
    Family("SIM", "flake8-simplify", "compliance",
           "nested `with`/`if` statements and roundabout boolean expressions have a simpler equivalent"),
    Family("C4", "flake8-comprehensions", "compliance",
           "needless `list()`/`dict()` calls around comprehensions cost time and read worse"),
    Family("PIE", "flake8-pie", "compliance", "unnecessary `pass`, spread and placeholder statements"),
    Family("B", "flake8-bugbear", "compliance",
           "likely bugs (mutable default arguments, loop variables captured late, `assert False`): a bug "
           "risk, not a security matter (shared/policy/findings.py)"),
    Family("UP", "pyupgrade", "features",
           "syntax the supported Python versions make obsolete (old annotations, `super(C, self)`, "
           "`%` formatting…): the modern idiom is shorter and what readers expect"),
)  # fmt: skip
LINT_SELECT: tuple[str, ...] = tuple(f.prefix for f in FAMILIES)
MAX_LISTED = 20


def family_of(code: str) -> Family | None:
    for family in FAMILIES:
        if code.startswith(family.prefix) and (
            len(code) > len(family.prefix) and code[len(family.prefix)].isdigit()
        ):
            return family
    return None


def _listing(findings: list[Finding]) -> str:
    lines = [f"- `{f.path}:{f.line}` {f.code}: {f.message}" for f in findings[:MAX_LISTED]]
    if len(findings) > MAX_LISTED:
        lines.append(f"- … and {len(findings) - MAX_LISTED} more")
    return "\n".join(lines)


def _improvement(family: Family, findings: list[Finding], unsafe: bool) -> Improvement:
    counts = Counter(f.code for f in findings)
    names = {f.code: f.name for f in findings}
    codes = sorted(counts)
    described = ", ".join(f"{c} {names[c]} ×{counts[c]}" for c in codes)
    files = sorted({f.path for f in findings})
    where = files[0] if len(files) == 1 else f"{len(files)} files"
    if unsafe:
        safety = ("ruff marks these fixes unsafe (they may change behaviour), so the change is kept only "
                  "if the repository's own tests pass with it alone.")  # fmt: skip
    else:
        safety = "ruff marks these fixes safe: they keep the code's behaviour."
    verb = "Modernise" if family.prefix == "UP" else "Fix"
    return Improvement(
        id=f"{family.category}-lint-{family.prefix.lower()}{'-unsafe' if unsafe else ''}",
        category=family.category,  # type: ignore[arg-type]
        title=f"{verb} {len(findings)} {family.name} finding(s) in {where} ({', '.join(codes)})",
        rationale=f"ruff reports {described}. Why it matters: {family.why}. {safety}",
        files=files,
        changes=_listing(findings),
        rule=("lint-unsafe:" if unsafe else "lint:") + ",".join(codes),
    )


def lint_improvements(findings: list[Finding]) -> list[Improvement]:
    """One improvement per (family, safe|unsafe) with at least one fixable finding, most findings first
    within a category; test files are included (their unused imports are as dead as anyone's)."""
    groups: dict[tuple[Family, bool], list[Finding]] = {}
    for f in findings:
        family = family_of(f.code)
        if family is None or not (f.fixable or f.unsafe_fix):
            continue
        groups.setdefault((family, not f.fixable), []).append(f)
    ranked = sorted(groups.items(), key=lambda kv: (kv[0][1], -len(kv[1]), kv[0][0].prefix))
    return [_improvement(family, sorted(fs), unsafe) for (family, unsafe), fs in ranked]


# Which fixes may change behaviour is decided in one place, shared/policy/behaviour.py.
is_behaviour_changing = changes_behaviour


def apply_lint(repo: Path, improvement: Improvement, requires_python: str | None) -> tuple[list[str], str]:
    """Apply ruff's fixes for the improvement's codes to its files: (changed files, summary).

    Raises ChangeRejectedError (and restores the files) when nothing was fixed, a finding was
    added, or a file no longer parses.
    """
    kind, _, arg = (improvement.rule or "").partition(":")
    codes = sorted(arg.split(","))
    unsafe = kind == "lint-unsafe"
    files = [f for f in improvement.files if f.endswith(".py") and (repo / f).is_file()]
    if not files:
        raise ChangeRejectedError(f"none of {improvement.files} exists in the working copy; no automatic fix")
    target = target_version(requires_python)
    measure = sorted({*LINT_SELECT, "E9"})
    before = run_ruff(repo, files, measure, target, respect_config=True)
    wanted = [f for f in before if f.code in codes]
    if not wanted:
        raise ChangeRejectedError(f"ruff no longer reports {','.join(codes)} in these files; nothing to fix")
    originals = {f: (repo / f).read_text(encoding="utf-8") for f in files}
    ruff_fix(repo, files, codes, target, unsafe=unsafe, respect_config=True)
    left_as_is, held = _refix_misfits(repo, originals, wanted, codes, target, unsafe)
    if "F401" not in codes:
        _remove_orphaned_imports(repo, files, before, target)
    after = run_ruff(repo, files, measure, target, respect_config=True)
    changed = sorted(f for f, text in originals.items() if (repo / f).read_text(encoding="utf-8") != text)
    broken = [f for f in changed if parse_failure_in(repo / f)]
    removed = len(wanted) - sum(f.code in codes for f in after)
    grown = sorted(
        c for c, n in Counter(f.code for f in after).items() if n > Counter(f.code for f in before)[c]
    )
    if not changed or removed <= 0 or broken or grown:
        for f, text in originals.items():
            (repo / f).write_text(text, encoding="utf-8")
        why = (f"the fix broke parsing of {broken}" if broken
               else f"the fix added findings ({', '.join(grown)})" if grown
               else "ruff's fix removed none of them" + (f" ({'; '.join(left_as_is[:4])})" if left_as_is else ""))  # fmt: skip
        raise ChangeRejectedError(f"{len(wanted)} finding(s) of {','.join(codes)}: {why}; not applied")
    summary = f"ruff fixed {removed} of {len(wanted)} finding(s) of {','.join(codes)}"
    left = len(wanted) - removed - held  # held sites are named below
    if left:
        summary += f"; {left} left without a fix"
    if left_as_is:
        summary += "; left as is where the result would not fit the project: " + "; ".join(left_as_is[:6])
    return changed, summary


def _refix_misfits(
    repo: Path, originals: dict[str, str], wanted: list[Finding], codes: list[str], target: str, unsafe: bool
) -> tuple[list[str], int]:
    """Where ruff's fix made a line the project would not accept (longer than its line length, or an
    f-string inside an implicit concatenation: pyupgrade's UP032 joins `'a ' 'b {}'.format(x)`), the
    file is fixed again with those sites held back: each site is tried alone to find them. A file
    that still misfits is restored. Returns what was left as is and why, and how many sites."""
    limit = line_length(repo, git(repo, "ls-files", "--", "*.py").split())
    notes: list[str] = []
    held = 0
    for rel, original in originals.items():
        path = repo / rel
        if not fix_misfits(original, path.read_text(encoding="utf-8"), limit):
            continue
        sites = [f for f in wanted if f.path == rel]
        bad: list[Finding] = []
        reasons: set[str] = set()
        for site in sites:  # one site at a time, the others held
            path.write_text(original, encoding="utf-8")
            with holding(repo, [f for f in sites if f is not site]):
                ruff_fix(repo, [rel], codes, target, unsafe=unsafe, respect_config=True)
            misfits = fix_misfits(original, path.read_text(encoding="utf-8"), limit)
            if misfits:
                bad.append(site)
                reasons.update(misfits.values())
        path.write_text(original, encoding="utf-8")
        with holding(repo, bad):
            ruff_fix(repo, [rel], codes, target, unsafe=unsafe, respect_config=True)
        if fix_misfits(original, path.read_text(encoding="utf-8"), limit):  # the sites interact: none
            path.write_text(original, encoding="utf-8")
            bad = sites
        notes.append(f"{len(bad)} site(s) in {rel} ({', '.join(sorted(reasons))})")
        held += len(bad)
    return notes, held


def fix_misfits(original: str, fixed: str, limit: int | None) -> dict[int, str]:
    """Lines of `fixed` (0-based) that a fix rewrote into something the project would not accept,
    with why (pure): longer than `limit` (and than the lines they replace), or part of an implicit
    string concatenation holding an f-string that `original` did not have there."""
    a, b = original.splitlines(), fixed.splitlines()
    joined_before = _fstring_concatenations(original)
    joined_after = _fstring_concatenations(fixed)
    new_joins = joined_after - joined_before
    out: dict[int, str] = {}
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        longest_before = max((len(line) for line in a[i1:i2]), default=0)
        for j in range(j1, j2):
            if limit and len(b[j]) > max(limit, longest_before):
                out[j] = f"a line over {limit} columns"
            elif any(first <= j + 1 <= last for first, last in new_joins):
                out[j] = "an f-string in an implicit concatenation"
    return out


def _fstring_concatenations(text: str) -> set[tuple[int, int]]:
    """(first line, last line) of each implicit string concatenation that holds an f-string (pure);
    a text that does not tokenize has none."""
    spans: set[tuple[int, int]] = set()
    fstring_start = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+: f-strings are several tokens
    fstring_end = getattr(tokenize, "FSTRING_END", None)
    group: list[tuple[int, int, bool]] = []  # (start line, end line, is an f-string) per literal
    depth, after_string = 0, False

    def close() -> None:
        if len(group) > 1 and any(f for _, _, f in group):
            spans.add((group[0][0], group[-1][1]))
        group.clear()

    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if fstring_start is not None and tok.type == fstring_start:
                if depth == 0:
                    if not after_string:
                        close()
                    group.append((tok.start[0], tok.start[0], True))
                depth += 1
                continue
            if fstring_end is not None and tok.type == fstring_end:
                depth -= 1
                if depth == 0:
                    group[-1] = (group[-1][0], tok.end[0], True)
                    after_string = True
                continue
            if depth or tok.type in (tokenize.NL, tokenize.COMMENT):
                continue
            if tok.type == tokenize.STRING:
                if not after_string:
                    close()
                prefix = tok.string[: len(tok.string) - len(tok.string.lstrip("rRbBuUfF"))]
                group.append((tok.start[0], tok.end[0], "f" in prefix.lower()))
                after_string = True
            else:
                close()
                after_string = False
    except (tokenize.TokenError, SyntaxError):
        return spans
    close()
    return spans


_KEEP = "  # noqa: F401  # repo-pilot-keep"


def _remove_orphaned_imports(repo: Path, files: list[str], before: list[Finding], target: str) -> None:
    """A rewrite such as `Optional[int]` -> `int | None` can leave its import unused: remove exactly
    those with ruff's safe F401 fix, keeping the imports that were unused before (they are another
    improvement's to remove; removing them here would make the two conflict)."""
    mid = run_ruff(repo, files, ["F401"], target, respect_config=True)
    was = {(f.path, f.message) for f in before if f.code == "F401"}
    orphaned = sorted({f.path for f in mid if (f.path, f.message) not in was})
    for rel in orphaned:
        keep = {f.line for f in mid if f.path == rel and (f.path, f.message) in was}
        path = repo / rel
        lines = path.read_text(encoding="utf-8").split("\n")
        for n in keep:
            lines[n - 1] += _KEEP
        path.write_text("\n".join(lines), encoding="utf-8")
        ruff_fix(repo, [rel], ["F401"], target, respect_config=True)
        path.write_text(path.read_text(encoding="utf-8").replace(_KEEP, ""), encoding="utf-8")
