"""`make eval CORPUS=DIR`: the offline main job on every repository in DIR, one table row each.

Each entry of DIR (a git repository, or a `*.bundle`) is cloned to a temp directory, so the
corpus itself is never touched, and run through the whole pipeline with the rules engine on
the configured servers (embedded ones when NATS_URL/DATABASE_URL are unset). A row says what a
user would want to know: findings before → after, improvements applied (and how many change
source code), the repository's own tests before → after, generated tests passed, merged or why
not, time, and whether any internal name (`run-…`) reached a file of the merged tree. Below the table,
per repository a summary line to compare between versions (changes merged, how many touch code or
may change behaviour, files added, the project's own checks on the changed files before → after,
own tests, score) and per change its rule, files added and justification.

    python -m shared.app.evaluate DIR [--out eval.json] [--timeout 1800] [--keep CLONES]

With `--keep`, the clones stay in CLONES (one per repository) so a person can read what was merged
(`git -C CLONES/NAME log -p`) the way the project's maintainer would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.adapters.git import git, run_git
from shared.policy.behaviour import changes_behaviour
from shared.policy.paths import is_code_path

INTERNAL_MARKERS = ("run-0", "run_0", "-imp0", "-imp1", "-imp2", "-imp3", "-imp4")


def corpus_entries(corpus: Path) -> list[Path]:
    """The repositories of `corpus`: `*.bundle` files and git repositories, sorted by name."""
    entries = []
    for path in sorted(Path(corpus).iterdir()):
        if path.suffix == ".bundle" or (path.is_dir() and (path / ".git").exists()):
            entries.append(path)
    return entries


def is_source_change(files: list[str]) -> bool:
    """True when an improvement touched code (not tests, docs or configuration)."""
    return any(is_code_path(rel) for rel in files)


def changes_of(events: list[Any], base_files: set[str] | None = None) -> list[dict[str, Any]]:
    """Per applied change: what it touched, the files it added, whether it may change behaviour and
    the justification its summary gives (pure)."""
    rules = {i.id: i.rule for e in events if e.type == "ImprovementsSuggested" for i in e.data.improvements}
    out = []
    for e in events:
        if e.type != "ChangeApplied":
            continue
        a = e.data
        added = sorted(f for f in a.files if base_files is not None and f not in base_files)
        out.append({"id": a.improvement_id, "rule": rules.get(a.improvement_id), "files": list(a.files),
                    "added": added, "code": is_source_change(a.files),
                    "behaviour_changing": changes_behaviour(rules.get(a.improvement_id)),
                    "justification": a.summary})  # fmt: skip
    return out


def _suite(group: dict | None) -> str:
    if not group:
        return "-"
    if group.get("errors") and not group.get("passed") and not group.get("failed"):
        return f"could not run ({group['errors']} err)"
    bad = group.get("failed", 0) + group.get("errors", 0)
    return f"{group.get('passed', 0)}/{group.get('total', 0)}" + (f" ({bad} failing)" if bad else "")


def summary_line(row: dict[str, Any]) -> str:
    """One line a person can compare between versions of Repo Pilot (pure)."""
    changes = row.get("changes") or []
    merged = f"merged {len(changes)} change(s)" if row["merged"] else f"not merged ({len(changes)} applied)"
    code = sum(c["code"] for c in changes)
    behaviour = sum(c["behaviour_changing"] for c in changes)
    added = sorted({f for c in changes for f in c["added"]})
    before, after = row.get("checks_before") or {}, row.get("checks_after") or {}
    ran = [f"{t} {b}→{after.get(t, '-')}" for t, b in sorted(before.items()) if isinstance(b, int)]
    idle: dict[str, list[str]] = {}  # why -> tools (thirty network hooks make one entry, not thirty)
    for t, b in sorted(before.items()):
        if not isinstance(b, int):
            idle.setdefault(str(b).removeprefix("not run: "), []).append(t)
    checks = ", ".join(ran) or "none run"
    if idle:
        checks += "; not run: " + ", ".join(f"{len(ts) if len(ts) > 2 else ', '.join(ts)} ({why})"
                                            for why, ts in idle.items())  # fmt: skip
    return (
        f"{row['repo']}: {merged}; {code} touch code, {behaviour} behaviour-changing (justified in their "
        f"summary); files added: {', '.join(added) or 'none'}; project checks on the changed files: {checks}; "
        f"own tests {_suite(row['own_before'])} → {_suite(row['own_after'])}; score {row['score']}"
    )


async def project_checks_delta(repo: Path, base: str, head: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The project's own checks (shared/adapters/project_checks.py) on the files changed between `base`
    and `head`, at each: tool -> number of findings, or why it did not run."""
    from shared.adapters.project_checks import count_findings

    changed = [f for f in run_git(repo, "diff", "--name-only", "--diff-filter=AM", base, head).stdout.splitlines()
               if f]  # fmt: skip
    if not changed or base == head:
        return {}, {}
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="repo-pilot-checks-") as tmp:
        for sha in (base, head):
            copy = Path(tmp) / sha
            git(Path(tmp), "clone", "--quiet", "--no-hardlinks", str(repo), str(copy))
            git(copy, "checkout", "--quiet", sha)
            out.append(await count_findings(copy, changed))
    return out[0], out[1]


def summarize(name: str, events: list[Any], seconds: float, leaks: list[str]) -> dict[str, Any]:
    """One table row from a run's events (pure)."""
    by_type: dict[str, list[Any]] = {}
    for e in events:
        by_type.setdefault(e.type, []).append(e.data)
    applied = by_type.get("ChangeApplied", [])
    review = (by_type.get("ChangesReviewed") or [None])[-1]
    tests = (by_type.get("TestsCompleted") or [None])[-1]
    merge = (by_type.get("MergeCompleted") or [None])[-1]
    failed = (by_type.get("PipelineFailed") or [None])[-1]
    signals = review.signals if review else {}
    generated = [g for g in (tests.groups if tests else [])]
    row = {
        "repo": name,
        "status": "failed" if failed else ("completed" if "PipelineCompleted" in by_type else "unfinished"),
        "findings_before": sum((signals.get("findings_before") or {}).values()) if review else None,
        "findings_after": sum((signals.get("findings_after") or {}).values()) if review else None,
        "applied": len(applied),
        "applied_source": sum(is_source_change(a.files) for a in applied),
        "rejected": len(by_type.get("ChangeRejected", [])),
        "own_before": tests.own_before.model_dump(exclude={"output"}) if tests and tests.own_before else None,
        "own_after": tests.own_after.model_dump(exclude={"output"}) if tests and tests.own_after else None,
        "generated_passed": sum(g.passed for g in generated),
        "generated_total": sum(g.total for g in generated),
        "score": review.overall if review else None,
        "merged": bool(merge and merge.merged),
        "why": (f"failed at {failed.step}: {failed.error}" if failed else (merge.reason if merge else "")),
        "seconds": round(seconds, 1),
        "internal_name_files": leaks,
        "changes": changes_of(events),
        "checks_before": {},
        "checks_after": {},
    }
    return row


def leaked_files(repo: Path) -> list[str]:
    """Files of the default branch's tree that mention an internal name."""
    hits = set()
    for marker in INTERNAL_MARKERS:
        out = run_git(repo, "grep", "-l", "-F", marker, "HEAD", "--").stdout
        hits |= {line.split(":", 1)[1] for line in out.splitlines() if ":" in line}
    return sorted(hits)


async def evaluate(corpus: Path, timeout: float, keep: Path | None = None) -> list[dict[str, Any]]:
    from shared.app.requests import append_request, validate_request
    from shared.app.runtime import PIPELINE_SERVICES, System
    from shared.common.settings import Settings
    from shared.store.projections import get_run

    settings = Settings()
    rows = []
    with tempfile.TemporaryDirectory(prefix="repo-pilot-eval-") as scratch:
        tmp = str(keep) if keep else scratch
        async with System(settings, services=list(PIPELINE_SERVICES)) as system:
            for entry in corpus_entries(corpus):
                name = entry.name.removesuffix(".bundle")
                dest = Path(tmp) / name
                git(Path(tmp), "clone", "--quiet", str(entry), str(dest))
                request = validate_request(
                    str(dest), "features,security,compliance,integration", None, "rules", settings
                )
                started = time.monotonic()
                run_id = await append_request(system.store, request, service="eval")
                print(f"{name}: {run_id}", file=sys.stderr, flush=True)
                deadline = started + timeout
                while time.monotonic() < deadline:
                    run, _ = await get_run(system.store, run_id)
                    if run and run["status"] in ("COMPLETED", "FAILED"):
                        break
                    await asyncio.sleep(1)
                seconds = time.monotonic() - started
                await asyncio.sleep(1)  # the run's last events (StepCompleted) land after the status flips
                events = await system.store.read_stream(run_id)
                row = summarize(name, events, seconds, leaked_files(dest))
                base = next((e.data.base_sha for e in events if e.type == "ChangesCommitted"), None)
                if base:
                    head = git(dest, "rev-parse", "HEAD")
                    base_files = set(git(dest, "ls-tree", "-r", "--name-only", base).splitlines())
                    row["changes"] = changes_of(events, base_files)
                    row["checks_before"], row["checks_after"] = await project_checks_delta(dest, base, head)
                row["summary"] = summary_line(row)
                print(row["summary"], file=sys.stderr, flush=True)
                rows.append(row)
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (what the README shows)."""
    head = (
        "| repository | findings before → after | applied (source) | own tests before → after "
        "| generated passed | merged / why not | time |"
    )
    out = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        findings = "-" if r["findings_before"] is None else f"{r['findings_before']} → {r['findings_after']}"
        merged = "merged" if r["merged"] else f"no: {r['why']}"
        if r["internal_name_files"]:
            merged += f" (internal names in {', '.join(r['internal_name_files'])})"
        out.append(
            f"| {r['repo']} | {findings} | {r['applied']} ({r['applied_source']}) | "
            f"{_suite(r['own_before'])} → {_suite(r['own_after'])} | "
            f"{r['generated_passed']}/{r['generated_total']} | {merged.replace('|', '/')} | {r['seconds']:.0f} s |"
        )
    return "\n".join(out)


def render_changes(rows: list[dict[str, Any]]) -> str:
    """Acceptability per repository and per change: the summary line, then each change with the files
    it added and, when it may change behaviour, its justification."""
    out = []
    for r in rows:
        out.append(f"- {r.get('summary') or summary_line(r)}")
        for c in r.get("changes") or []:
            kind = "behaviour-changing" if c["behaviour_changing"] else "keeps behaviour"
            added = f"; adds {', '.join(c['added'])}" if c["added"] else ""
            out.append(f"  - {c['id']} ({c['rule']}, {kind}{added}): {c['justification'][:300]}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--out", type=Path, default=Path("eval.json"))
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--keep", type=Path, help="keep the clones in this new directory (to read the merges)"
    )
    args = parser.parse_args(argv)
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        print(f"error: --keep {args.keep} is not empty; name a new directory", file=sys.stderr)
        return 2
    if not args.corpus.is_dir() or not corpus_entries(args.corpus):
        print(f"error: {args.corpus} holds no git repositories or bundles", file=sys.stderr)
        return 2
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(evaluate(args.corpus, args.timeout, args.keep))
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(render_table(rows))
    print()
    print(render_changes(rows))
    print(f"\n(written to {args.out})")
    from shared.app.embedded import left_running
    from shared.common.settings import Settings

    if note := left_running(Settings().home):
        print(note, file=sys.stderr)
    return 0 if all(r["status"] == "completed" and not r["internal_name_files"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
