"""The project's own checks as the gate of a change: what its maintainers run (project_tools.py),
run on the files the change touched, before and after it; the comparison and the verdict are pure
(shared/policy/checks_gate.py). A tool that is not installed is reported "not run".

`gate_change` first repairs what the change broke, only inside the lines it touched: ruff's *safe*
fixes for findings the change added, then isort and the formatter the project uses. A repair that
would reach other lines is cut back to the change's own hunks (`limit_to_changed`). Whatever the
change still adds under the project's own configuration rejects it, naming the findings.

Every command runs through the sandbox (local hooks and mypy plugins are the repository's code).
"""

from __future__ import annotations

import asyncio

import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import yaml

from shared.adapters.analyzers import ruff_checked_files, ruff_config, target_version, tool_command
from shared.adapters.git import git, run_git
from shared.adapters.project_tools import FORMATTERS, JS, PY, detect, read_file
from shared.adapters.sandbox import LocalSandbox
from shared.policy.checks_gate import (
    MAX_NAMED,
    CheckRun,
    GateRejected,
    GateReport,
    added,
    changed_ranges,
    limit_to_changed,
    position_free,
    rejection,
    verdict,
)
from shared.ports.sandbox import Sandbox

TIMEOUT = 300.0


def _installed(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


class _Runner:
    def __init__(self, repo: Path, sandbox: Sandbox) -> None:
        self.repo = repo
        self.sandbox = sandbox
        # The Docker sandbox has neither our tools nor the project's: the config-only formatters and
        # linters run locally (they execute nothing of the repository's); the rest are not run.
        self.local = sandbox if getattr(sandbox, "shares_host_fs", True) else LocalSandbox()
        self.confined = getattr(sandbox, "shares_host_fs", True)

    async def run(self, cmd: list[str], *, runs_repo_code: bool = False):
        box = self.sandbox if runs_repo_code else self.local
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "NO_COLOR": "1"}
        return await box.run(cmd, cwd=self.repo, timeout=TIMEOUT, env=env)


def _target(repo: Path) -> str:
    try:
        requires = (tomllib.loads(read_file(repo, "pyproject.toml")).get("project") or {}).get(
            "requires-python"
        )
    except tomllib.TOMLDecodeError:
        requires = None
    return target_version(requires)


async def _ruff(r: _Runner, files: list[str]) -> CheckRun:
    cmd = [
        *tool_command("ruff"),
        "check",
        "--no-cache",
        "--exit-zero",
        "--force-exclude",
        "--output-format",
        "json",
    ]
    if ruff_config(r.repo) is None:  # configured through pre-commit only: ruff's defaults
        cmd += ["--isolated", "--target-version", _target(r.repo)]
    done = await r.run([*cmd, "--", *files])
    if done.exit_code != 0:
        return CheckRun("ruff", not_run=f"ruff failed: {done.stderr.strip()[:200]}")
    keys, shown = [], []
    for item in sorted(json.loads(done.stdout or "[]"), key=lambda i: (i["filename"], i["location"]["row"])):
        rel = Path(item["filename"]).resolve().relative_to(r.repo.resolve()).as_posix()
        code = item.get("code") or "syntax-error"
        keys.append(f"{rel}: {code} {item.get('message', '')}")
        shown.append(f"{rel}:{item['location']['row']} {code} {item.get('message', '')}")
    return CheckRun("ruff", tuple(keys), tuple(shown))


async def _formatted(r: _Runner, tool: str, files: list[str]) -> CheckRun:
    """Files the formatter (or isort) would change: one finding each."""
    cmd = {"ruff-format": [*tool_command("ruff"), "format", "--no-cache", "--check", "--force-exclude"],
           "black": [_installed("black") or "black", "--check", "--quiet"],
           "isort": [_installed("isort") or "isort", "--check-only", "--quiet"]}[tool]  # fmt: skip
    bad = []
    for rel in files:  # one by one: the tools' messages differ, the exit code does not
        done = await r.run([*cmd, rel])
        if done.exit_code not in (0, 1):
            return CheckRun(tool, not_run=f"{tool} failed: {(done.stderr or done.stdout).strip()[:200]}")
        if done.exit_code == 1:
            bad.append(
                f"{rel}: would be reformatted by {tool}"
                if tool != "isort"
                else f"{rel}: imports not sorted by isort"
            )
    return CheckRun(tool, tuple(bad), tuple(bad))


async def _lines_tool(r: _Runner, tool: str, files: list[str]) -> CheckRun:
    """flake8, mypy, pyright, eslint, prettier: one finding per line of output naming a file."""
    exe = _installed(tool) or str(r.repo / "node_modules" / ".bin" / tool)
    if not Path(exe).exists():
        return CheckRun(tool, not_run=f"{tool} is not installed")
    if tool in ("mypy", "pyright", "eslint") and not r.confined:
        return CheckRun(tool, not_run="the Docker sandbox has no copy of the tool")
    args = {"flake8": [], "mypy": ["--no-incremental", "--follow-imports=silent", "--no-error-summary",
                                   "--cache-dir=/dev/null"],
            "pyright": [], "eslint": ["--format", "unix"], "prettier": ["--list-different"]}[tool]  # fmt: skip
    done = await r.run([exe, *args, *files], runs_repo_code=tool in ("mypy", "pyright", "eslint"))
    if done.timed_out:
        return CheckRun(tool, not_run=f"{tool} timed out")
    lines = [ln for ln in done.stdout.splitlines() if any(ln.strip().startswith(f) for f in files)]
    return CheckRun(tool, tuple(position_free(ln) for ln in lines), tuple(ln.strip() for ln in lines))


def _local_hooks_config(repo: Path) -> str | None:
    """The project's pre-commit config with only its `repo: local` / `meta` hooks, or None."""
    data = yaml.safe_load(read_file(repo, ".pre-commit-config.yaml")) or {}
    repos = [r for r in data.get("repos") or [] if isinstance(r, dict) and r.get("repo") in ("local", "meta")]
    return yaml.safe_dump({**data, "repos": repos}) if repos else None


async def _pre_commit(r: _Runner, files: list[str]) -> CheckRun:
    exe = _installed("pre-commit")
    if exe is None:
        return CheckRun("pre-commit", not_run="pre-commit is not installed")
    if not r.confined:
        return CheckRun("pre-commit", not_run="the Docker sandbox has no copy of pre-commit")
    config = _local_hooks_config(r.repo)
    if config is None:
        return CheckRun("pre-commit")
    # Inside .git: visible in the sandbox, never part of the change.
    cfg = r.repo / ".git" / "repo-pilot-pre-commit.yaml"
    cfg.write_text(config, encoding="utf-8")
    texts = {f: (r.repo / f).read_bytes() for f in files}
    try:
        done = await r.run([exe, "run", "--config", str(cfg), "--color", "never", "--files", *files],
                           runs_repo_code=True)  # fmt: skip
    finally:
        for f, data in texts.items():  # a fixer hook rewrites files: its verdict is what we keep
            (r.repo / f).write_bytes(data)
        cfg.unlink(missing_ok=True)
    failed = [m.group(1).rstrip(". ") for m in re.finditer(r"^(.+?)\.*\s*Failed$", done.stdout, re.MULTILINE)]
    if done.exit_code != 0 and not failed:
        return CheckRun(
            "pre-commit", not_run=f"pre-commit failed: {(done.stdout + done.stderr).strip()[-200:]}"
        )
    keys = tuple(f"pre-commit hook `{name}` fails" for name in failed)
    detail = done.stdout.strip()[-400:].replace("\n", " | ")
    return CheckRun("pre-commit", keys, tuple(f"{k}: {detail}" for k in keys))


async def run_check(r: _Runner, tool: str, files: list[str]) -> CheckRun:
    """One tool on the files it looks at (Python or JavaScript by extension)."""
    exts = JS if tool in ("eslint", "prettier") else PY
    mine = files if tool == "pre-commit" else [f for f in files if f.endswith(exts)]
    if not mine:
        return CheckRun(tool)
    if tool == "ruff":
        mine = ruff_checked_files(r.repo, mine)  # the project's `include`: what its CI lints
        return await _ruff(r, mine) if mine else CheckRun(tool)
    if tool in ("ruff-format", "black", "isort"):
        if tool == "ruff-format":  # named files are formatted even outside the project's `include`
            mine = ruff_checked_files(r.repo, mine)
            if not mine:
                return CheckRun(tool)
        elif not _installed(tool):
            return CheckRun(tool, not_run=f"{tool} is not installed")
        return await _formatted(r, tool, mine)
    if tool == "pre-commit":
        return await _pre_commit(r, mine)
    return await _lines_tool(r, tool, mine)


async def run_checks(r: _Runner, tools: list[str], files: list[str]) -> dict[str, CheckRun]:
    return {tool: await run_check(r, tool, files) for tool in tools}


async def count_findings(
    repo: Path, files: list[str], sandbox: Sandbox | None = None
) -> dict[str, int | str]:
    """The project's own checks on `files` of `repo` as the tree is now: tool -> number of findings,
    or "not run: why" (for reports such as `make eval`; the gate is `gate_change`)."""
    repo = Path(repo)
    try:
        tools, skipped = detect(repo)
    except ValueError as exc:  # an unreadable .pre-commit-config.yaml
        return {"pre-commit": f"not run: {exc}"}
    present = [f for f in files if (repo / f).is_file()]
    runs = await run_checks(_Runner(repo, sandbox or LocalSandbox()), tools, present)
    return {t: (len(r.findings) if not r.not_run else f"not run: {r.not_run}") for t, r in runs.items()} | {
        t: f"not run: {why}" for t, why in skipped.items()
    }


# -- the gate --------------------------------------------------------------------------------------


def _changed_files(repo: Path, since: str) -> tuple[list[str], dict[str, str]]:
    """(files added or modified since `since`, the base text of the modified ones)."""
    git(repo, "add", "--all")
    listed = git(repo, "diff", "--cached", "--name-status", "--no-renames", since).splitlines()
    files, base = [], {}
    for row in listed:
        status, _, rel = row.partition("\t")
        if status in ("A", "M") and (repo / rel).is_file():
            files.append(rel)
            if status == "M":
                base[rel] = run_git(repo, "show", f"{since}:{rel}").stdout
    return files, base


async def _repair(r: _Runner, tools: list[str], rel: str, new_ruff_codes: set[str]) -> None:
    """Ruff's safe fixes for the codes the change added, isort, then the project's formatter."""
    if new_ruff_codes:
        cmd = [*tool_command("ruff"), "check", "--no-cache", "--exit-zero", "--fix", "--no-unsafe-fixes",
               "--force-exclude", "--quiet", "--select", ",".join(sorted(new_ruff_codes))]  # fmt: skip
        await r.run([*cmd, "--", rel])
    if "isort" in tools and _installed("isort"):
        await r.run([_installed("isort") or "isort", "--quiet", rel])
    if "ruff-format" in tools:
        await r.run([*tool_command("ruff"), "format", "--no-cache", "--force-exclude", "--quiet", rel])
    elif "black" in tools and _installed("black"):
        await r.run([_installed("black") or "black", "--quiet", rel])


def _parses(text: str) -> bool:
    import ast

    from shared.common.pyparse import PARSE_LOCK

    try:
        with PARSE_LOCK:
            ast.parse(text)
    except (SyntaxError, ValueError):
        return False
    return True


async def gate_change(repo: Path, since: str, sandbox: Sandbox) -> GateReport:
    """Run the project's own checks on what changed in `repo` since commit `since`: repair what the
    change broke (only in its own lines), then raise ChangeRejectedError naming every finding the
    change still adds under the project's configuration. Returns the report when it passes."""
    repo = Path(repo)
    try:
        tools, skipped = detect(repo)
    except ValueError as exc:
        return GateReport(not_run={"pre-commit": str(exc)})
    report = GateReport(not_run=dict(skipped))
    files, base = await asyncio.to_thread(_changed_files, repo, since)  # git, off the shared loop
    if not tools or not files:
        return report
    r = _Runner(repo, sandbox)
    after_text = {f: (repo / f).read_text(encoding="utf-8", errors="surrogateescape") for f in files}
    for rel, text in base.items():  # before: the same files at the base, in the same place
        (repo / rel).write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        before = await run_checks(r, tools, sorted(base))
    finally:
        for rel, text in after_text.items():
            (repo / rel).write_text(text, encoding="utf-8", errors="surrogateescape")
    after = await run_checks(r, tools, files)
    new_ruff: dict[str, set[str]] = {}  # file -> codes of the ruff findings the change added there
    for shown in added(before["ruff"], after["ruff"]) if "ruff" in tools else []:
        where, code = shown.split(" ", 2)[:2]
        new_ruff.setdefault(where.rpartition(":")[0], set()).add(code)
    formats = [t for t in ("isort", *FORMATTERS) if t in tools]
    for rel in files:
        codes = new_ruff.get(rel, set())
        if not rel.endswith(PY) or not (codes or formats):
            continue
        await _repair(r, tools, rel, codes)
        repaired = (repo / rel).read_text(encoding="utf-8", errors="surrogateescape")
        limited = limit_to_changed(
            after_text[rel], repaired, changed_ranges(base.get(rel, ""), after_text[rel])
        )
        if limited != after_text[rel] and _parses(limited):
            report.repaired.append(rel)
        else:
            limited = after_text[rel]
        (repo / rel).write_text(limited, encoding="utf-8", errors="surrogateescape")
    if report.repaired:
        after = await run_checks(r, tools, files)
    problems = verdict(tools, before, after, report)
    if problems:
        raise GateRejected(rejection(problems), report.as_event())
    return report


# -- generated tests in the project's style --------------------------------------------------------


async def conform_generated(
    repo: Path, files: dict[str, str], sandbox: Sandbox
) -> tuple[dict[str, str], dict[str, str]]:
    """Generated Python test files as the project would write them: unused imports removed and
    imports sorted (ruff's safe fixes), then the project's formatter (its quote style, line length),
    all under the project's own configuration. Returns (kept files, dropped file -> why): a file
    that still has findings under the project's ruff configuration is dropped, with them named.
    The files are written into `repo` only while this runs."""
    repo = Path(repo)
    py = {rel: text for rel, text in files.items() if rel.endswith(PY)}
    if not py:
        return dict(files), {}
    try:
        tools, _ = detect(repo)
    except ValueError:
        tools = []
    r = _Runner(repo, sandbox)
    fresh = [rel for rel in py if not (repo / rel).exists()]
    kept, dropped = {rel: t for rel, t in files.items() if rel not in py}, {}
    try:
        for rel, text in py.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text, encoding="utf-8")
        names = sorted(py)
        fix = [
            *tool_command("ruff"),
            "check",
            "--no-cache",
            "--exit-zero",
            "--fix",
            "--no-unsafe-fixes",
            "--quiet",
        ]
        # Our own leftovers whatever the project selects: unused imports, then import order.
        await r.run([*fix, "--extend-select", "F401,I001", *([] if ruff_config(repo) else ["--isolated"]),
                     "--", *names])  # fmt: skip
        if "isort" in tools and _installed("isort"):
            await r.run([_installed("isort") or "isort", "--quiet", *names])
        if "ruff-format" in tools:
            await r.run([*tool_command("ruff"), "format", "--no-cache", "--quiet", *names])
        elif "black" in tools and _installed("black"):
            await r.run([_installed("black") or "black", "--quiet", *names])
        left = await _ruff(r, names) if "ruff" in tools else CheckRun("ruff")
        for rel in names:
            problems = [s for s in left.shown if s.startswith(f"{rel}:")]
            if problems:
                dropped[rel] = "; ".join(problems[:MAX_NAMED])
            else:
                kept[rel] = (repo / rel).read_text(encoding="utf-8")
    finally:
        for rel in fresh:
            (repo / rel).unlink(missing_ok=True)
    return kept, dropped
