"""Objective signals about a change, for every engine: findings before/after, parse failures, diff size.

I/O (git, ruff) is in `compute_signals`; what the numbers mean is decided by the pure helpers
below and by `shared.policy.review`.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from shared.adapters.analyzers import DEFAULT_SELECT, Finding, run_ruff, target_version
from shared.adapters.git import run_git
from shared.common.pyparse import parse_python


def count_by_rule(findings: list[Finding]) -> dict[str, int]:
    return dict(sorted(Counter(f.code for f in findings).items()))


def parse_numstat(numstat: str) -> dict[str, Any]:
    """Files, lines added and removed from `git diff --numstat -z`-less output (binary files count as files)."""
    files, added, removed, paths = 0, 0, 0, []
    for line in numstat.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        files += 1
        paths.append(parts[2])
        added += int(parts[0]) if parts[0].isdigit() else 0
        removed += int(parts[1]) if parts[1].isdigit() else 0
    return {"files": files, "added": added, "removed": removed, "paths": sorted(paths)}


def parse_failure(path: str, source: str) -> str | None:
    try:
        parse_python(source, filename=path)
    except SyntaxError as exc:
        return f"{path}:{exc.lineno}: {exc.msg}"
    return None


def findings_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per rule, how many more (positive) or fewer (negative) findings; rules that did not change left out."""
    codes = sorted(set(before) | set(after))
    return {c: after.get(c, 0) - before.get(c, 0) for c in codes if after.get(c, 0) != before.get(c, 0)}


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_git(repo, *args, timeout=120)


def _materialize(repo: Path, sha: str, paths: list[str], dest: Path) -> list[str]:
    """Write the versions of `paths` at `sha` under `dest`; returns the ones that exist at that commit."""
    present = []
    for rel in paths:
        shown = run_git(repo, "show", f"{sha}:{rel}", text=False, timeout=60)
        if shown.returncode != 0:
            continue  # added or deleted by the change
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(shown.stdout)
        present.append(rel)
    return present


def _requires_python(repo: Path, sha: str) -> str | None:
    shown = _git(repo, "show", f"{sha}:pyproject.toml")
    if shown.returncode != 0:
        return None
    try:
        return (tomllib.loads(shown.stdout).get("project") or {}).get("requires-python")
    except tomllib.TOMLDecodeError:
        return None


def compute_signals_sync(repo: Path, base_sha: str, head_sha: str) -> dict[str, Any]:
    resolved = []
    for sha in (base_sha, head_sha):
        rev = _git(repo, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
        if rev.returncode != 0:
            raise ValueError(f"{sha} is not a commit in {repo}")
        resolved.append(rev.stdout.strip())
    base_sha, head_sha = resolved  # record commits, not names like HEAD that move
    numstat = _git(repo, "diff", "--numstat", "--no-renames", base_sha, head_sha)
    if numstat.returncode != 0:
        raise RuntimeError(f"git diff failed: {numstat.stderr.strip()}")
    diff = parse_numstat(numstat.stdout)
    created = _git(repo, "diff", "--name-only", "--no-renames", "--diff-filter=A", base_sha, head_sha)
    if created.returncode != 0:
        raise RuntimeError(f"git diff failed: {created.stderr.strip()}")
    changed_py = [p for p in diff["paths"] if p.endswith(".py")]
    target = target_version(_requires_python(repo, head_sha))
    with tempfile.TemporaryDirectory(prefix="repo-pilot-signals-") as tmp:
        base_dir, head_dir = Path(tmp) / "base", Path(tmp) / "head"
        base_dir.mkdir()
        head_dir.mkdir()
        base_files = _materialize(repo, base_sha, changed_py, base_dir)
        head_files = _materialize(repo, head_sha, changed_py, head_dir)
        before = run_ruff(base_dir, base_files, DEFAULT_SELECT, target)
        after = run_ruff(head_dir, head_files, DEFAULT_SELECT, target)
        failures = [
            failure
            for rel in head_files
            if (failure := parse_failure(rel, (head_dir / rel).read_text(encoding="utf-8", errors="replace")))
        ]
    before_counts, after_counts = count_by_rule(before), count_by_rule(after)
    return {
        "base_sha": base_sha,
        "head_sha": head_sha,
        "checked_files": changed_py,
        "select": list(DEFAULT_SELECT),
        "findings_before": before_counts,
        "findings_after": after_counts,
        "findings_delta": findings_delta(before_counts, after_counts),
        "parse_failures": sorted(failures),
        "diff": {k: diff[k] for k in ("files", "added", "removed")},
        "created_files": sorted(f for f in created.stdout.splitlines() if f),
    }


async def compute_signals(repo: Path, base_sha: str, head_sha: str) -> dict[str, Any]:
    """Signals for the change base_sha..head_sha in the git repository at `repo`.

    Findings are ruff's (the families in DEFAULT_SELECT, repository config ignored) on the Python
    files the change touches, counted by rule at base and at head; parse failures are the touched
    Python files that do not parse at head; diff is files changed and lines added/removed.
    """
    return await asyncio.to_thread(compute_signals_sync, Path(repo), base_sha, head_sha)


class StaticSignals:
    """The Signals port (shared/ports/signals.py): ruff on the files the change touches."""

    async def compute(self, repo: Path, base_sha: str, head_sha: str) -> dict[str, Any]:
        return await compute_signals(repo, base_sha, head_sha)
