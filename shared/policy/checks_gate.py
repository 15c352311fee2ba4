"""The gate of a change by the project's own checks, decided (pure): comparing each tool's findings
before and after a change, where a repair may reach, and what the report and the rejection say.
Running the tools is shared/adapters/project_checks.py.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field

from shared.events.run import ProjectChecks
from shared.ports.errors import ChangeRejectedError

MAX_NAMED = 12


@dataclass(frozen=True)
class CheckRun:
    """One tool's verdict on a set of files: `findings` are position-free keys (a finding that only
    moved is the same finding), `shown` the same findings as the tool printed them."""

    tool: str
    findings: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()
    not_run: str = ""  # why it did not run; empty when it ran


@dataclass
class GateReport:
    """What the project's own checks said about one change."""

    checks: list[str] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)  # files the repair step changed
    before: dict[str, int] = field(default_factory=dict)  # tool -> findings in the touched files
    after: dict[str, int] = field(default_factory=dict)

    def as_event(self) -> ProjectChecks:
        """The report as it is recorded in ChangeApplied / ChangeRejected."""
        return ProjectChecks(ran=list(self.checks), before=dict(self.before), after=dict(self.after),
                             repaired=list(self.repaired), not_run=dict(self.not_run))  # fmt: skip

    def line(self) -> str:
        """One line for a reader: tools run, findings before -> after, repairs, what did not run."""
        ran = ", ".join(f"{t} {self.before.get(t, 0)}→{self.after.get(t, 0)}" for t in self.checks) or "none"
        out = f"project checks: {ran}"
        if self.repaired:
            out += f"; repaired in the touched lines: {', '.join(self.repaired)}"
        if self.not_run:
            out += "; not run: " + ", ".join(f"{t} ({why})" for t, why in sorted(self.not_run.items()))
        return out


def position_free(line: str) -> str:
    """`a.py:12:5: F401 x` -> `a.py: F401 x` (a finding that only moved stays the same finding)."""
    return re.sub(r"^([^:\s]+):\d+(?::\d+)?:?", r"\1:", line.strip())


def added(before: CheckRun, after: CheckRun) -> list[str]:
    """The findings `after` has beyond `before`, as the tool printed them (pure)."""
    extra = Counter(after.findings) - Counter(before.findings)
    shown = []
    for key, shown_as in zip(after.findings, after.shown, strict=True):
        if extra[key] > 0:
            extra[key] -= 1
            shown.append(shown_as)
    return shown


def changed_ranges(base: str, after: str) -> list[tuple[int, int]]:
    """Line ranges [start, end) of `after` that differ from `base` (a pure deletion is an empty
    range at its place) (pure)."""
    ops = difflib.SequenceMatcher(None, base.splitlines(), after.splitlines(), autojunk=False).get_opcodes()
    return [(j1, j2) for tag, _, _, j1, j2 in ops if tag != "equal"]


def limit_to_changed(after: str, repaired: str, ranges: list[tuple[int, int]], reach: int = 1) -> str:
    """`repaired` cut back to the edits that touch `ranges` of `after` (or lie within `reach` lines
    of them); every other line stays as it was in `after` (pure)."""
    a, r = after.splitlines(keepends=True), repaired.splitlines(keepends=True)
    out: list[str] = []

    def near(i1: int, i2: int) -> bool:  # half-open ranges; an empty one counts as the line at it
        return any(
            i1 < max(end, start + 1) + reach and start - reach < max(i2, i1 + 1) for start, end in ranges
        )

    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, r, autojunk=False).get_opcodes():
        if tag == "replace" and i2 - i1 == j2 - j1:  # line for line: decide each line on its own
            out.extend(r[j1 + k] if near(i1 + k, i1 + k + 1) else a[i1 + k] for k in range(i2 - i1))
        else:
            out.extend(r[j1:j2] if tag != "equal" and near(i1, i2) else a[i1:i2])
    return "".join(out)


def verdict(
    tools: list[str], before: dict[str, CheckRun], after: dict[str, CheckRun], report: GateReport
) -> list[str]:
    """Fill `report` with each tool's findings before -> after (or why it did not run) and return the
    findings the change adds, as `tool: finding` (empty when the change passes)."""
    problems: list[str] = []
    for tool in tools:
        b, a = before[tool], after[tool]
        if a.not_run or b.not_run:
            report.not_run[tool] = a.not_run or b.not_run
            continue
        report.checks.append(tool)
        report.before[tool], report.after[tool] = len(b.findings), len(a.findings)
        problems += [f"{tool}: {s}" for s in added(b, a)]
    return problems


def rejection(problems: list[str]) -> str:
    """Why a change is rejected, naming the first MAX_NAMED findings it adds."""
    named = "; ".join(problems[:MAX_NAMED]) + (f"; … and {len(problems) - MAX_NAMED} more"
                                               if len(problems) > MAX_NAMED else "")  # fmt: skip
    return (f"the change adds {len(problems)} finding(s) under the project's own "
            f"checks, not repairable within its lines: {named}")  # fmt: skip


class GateRejected(ChangeRejectedError):
    """The project's own checks rejected a change; `checks` is what they said (for ChangeRejected)."""

    def __init__(self, reason: str, checks: ProjectChecks):
        super().__init__(reason)
        self.checks = checks


def checks_of(exc: ChangeRejectedError) -> ProjectChecks | None:
    """What the project's own checks said about a rejected change, when they are why it was rejected."""
    return exc.checks if isinstance(exc, GateRejected) else None
