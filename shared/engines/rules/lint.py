"""Lint and modernisation: ruff's own fixes, grouped by rule family, as improvements (pure) and applied.

A family's *safe* fixes (ruff promises they keep behaviour) make one improvement; its *unsafe*
fixes (they may change behaviour, e.g. `== None` -> `is None` for a class overriding `__eq__`)
make another, which `implement` keeps only when the repository's own tests still pass with it
alone (see `validate.py`). The repository's own ruff configuration is respected: what it ignores
is never "fixed" (`respect_config=True` in the analyzers).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from shared.adapters.analyzers import Finding, parse_failure_in, ruff_fix, run_ruff, target_version
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
               else "ruff's fix removed none of them")  # fmt: skip
        raise ChangeRejectedError(f"{len(wanted)} finding(s) of {','.join(codes)}: {why}; not applied")
    summary = f"ruff fixed {removed} of {len(wanted)} finding(s) of {','.join(codes)}"
    left = len(wanted) - removed
    if left:
        summary += f"; {left} left without a fix"
    return changed, summary


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
