"""Wall time spent inside child processes, by tool: a `subprocess.Popen` subclass installed for the
duration of a benchmark records when each child starts and when its exit status is first known.

Every child Repo Pilot starts goes through `subprocess.Popen`: `subprocess.run` (git, ruff, bandit,
codemodder) calls it, and so does asyncio's `create_subprocess_exec` (the sandbox), which sets
`returncode` when the child exits; that assignment is the end of the interval. The telemetry module
has spans for git and sandbox runs only, not for ruff, bandit or codemods, hence this hook.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

TOOLS = ("pytest", "ruff", "bandit", "codemods", "git", "pip/uv", "python", "other")


def classify(argv: Sequence[str]) -> str:
    """The tool a command line runs, looking through wrappers (bwrap, unshare, env, python -m)."""
    names = [PurePath(str(a)).name for a in argv]
    joined = " ".join(str(a) for a in argv)
    if any(n in ("pip", "uv", "pip3") for n in names) or " -m pip " in f" {joined} ":
        return "pip/uv"  # before pytest: `pip install pytest` is an install
    if "pytest" in joined or "py.test" in joined:
        return "pytest"
    for name in names:
        if name == "ruff":
            return "ruff"
        if name == "bandit":
            return "bandit"
        if name in ("codemodder", "semgrep", "semgrep-core") or "codemodder" in joined:
            return "codemods"
        if name == "git":
            return "git"
        if name in ("pip", "uv", "pip3") or " -m pip " in f" {joined} ":
            return "pip/uv"
    if " -m ruff" in joined:
        return "ruff"
    if " -m bandit" in joined:
        return "bandit"
    if any(n.startswith("python") for n in names):
        return "python"
    return "other"


@dataclass
class Interval:
    tool: str
    start: float
    end: float | None = None
    argv: tuple[str, ...] = ()


@dataclass
class ToolTimer:
    intervals: list[Interval] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def between(self, start: float, end: float) -> list[Interval]:
        return [i for i in self.intervals if i.start < end and (i.end or end) > start]

    def busy(self, start: float, end: float, tools: Sequence[str] | None = None) -> float:
        """Seconds of [start, end] during which at least one child (of `tools`) ran: the union of
        intervals, so children running side by side count once."""
        spans = sorted((max(i.start, start), min(i.end or end, end)) for i in self.between(start, end)
                       if tools is None or i.tool in tools)
        total, cur_start, cur_end = 0.0, None, None
        for s, e in spans:
            if cur_end is None or s > cur_end:
                if cur_end is not None:
                    total += cur_end - cur_start
                cur_start, cur_end = s, e
            else:
                cur_end = max(cur_end, e)
        if cur_end is not None:
            total += cur_end - cur_start
        return total

    def by_tool(self, start: float, end: float) -> dict[str, float]:
        """Union time per tool (a tool's children overlapping each other count once)."""
        return {tool: self.busy(start, end, [tool]) for tool in TOOLS}

    def count(self, start: float, end: float, tool: str) -> int:
        return sum(1 for i in self.between(start, end) if i.tool == tool)


@contextlib.contextmanager
def timing_children() -> Iterator[ToolTimer]:
    """Install the hook for the block; yields the timer collecting every child's interval."""
    timer = ToolTimer()
    original = subprocess.Popen

    class TimedPopen(original):  # type: ignore[misc, valid-type]
        def __init__(self, args, *a, **kw):
            argv = [args] if isinstance(args, (str, bytes)) else list(args)
            self._bench = Interval(classify([str(x) for x in argv]), time.perf_counter(),
                                   argv=tuple(str(x) for x in argv[:8]))
            with timer._lock:
                timer.intervals.append(self._bench)
            try:
                super().__init__(args, *a, **kw)
            except BaseException:
                self._bench.end = time.perf_counter()
                raise

        @property
        def returncode(self):
            return self.__dict__.get("_bench_rc")

        @returncode.setter
        def returncode(self, value):
            self.__dict__["_bench_rc"] = value
            interval = self.__dict__.get("_bench")
            if value is not None and interval is not None and interval.end is None:
                interval.end = time.perf_counter()

    subprocess.Popen = TimedPopen  # type: ignore[misc]
    try:
        yield timer
    finally:
        subprocess.Popen = original  # type: ignore[misc]
