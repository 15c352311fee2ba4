"""The repository's own test suite, run with its own ecosystem's runner.

Python goes through pytest in the target's env (sandbox.run_pytest, target_env.python_for);
JavaScript/TypeScript through `npm test` (the package's own script) or `node --test`; Rust
through `cargo test`; Go through `go test ./...`. Dependencies come first, with the network
(`npm install --ignore-scripts`, `cargo fetch`, `go mod download`); the tests then run without
it. A toolchain that is not installed is said so, as one error: the suite did not run, so no run
can claim it did not regress; so is a test command that is not found (exit 127).

Counts come from each runner's own summary lines (node's `# tests/# pass/# fail`, jest's and
vitest's `Tests` line, mocha's `N passing/failing`, uvu's `Total/Passed/Skipped`, ava's `N tests
passed/failed`, cargo's `test result:` lines, go's `--- PASS/FAIL`); when a runner prints none (a custom npm script), the suite counts as one test
that passed or failed by its exit code, and the output says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from shared.adapters.sandbox import Sandbox, run_pytest, tail
from shared.adapters.target_env import TargetPython, install_project
from shared.events.run import TestGroupResult

TIMEOUT = 600.0
_NODE = re.compile(r"^[#ℹ]\s*(tests|pass|fail|cancelled|skipped|todo)\s+(\d+)\s*$", re.MULTILINE)
_JEST = re.compile(r"^\s*Tests:\s+(.*?)(\d+) total", re.MULTILINE)
_JEST_PART = re.compile(r"(\d+) (passed|failed|skipped|todo|pending)")
_VITEST = re.compile(r"^\s*Tests\s+((?:\d+ \w+(?: \| )?)+)\s*\((\d+)\)", re.MULTILINE)
_MOCHA = re.compile(r"^\s+(\d+) (passing|failing|pending)\b", re.MULTILINE)
_UVU = re.compile(r"^\s*Total:\s+(\d+)\s*\n\s*Passed:\s+(\d+)\s*\n\s*Skipped:\s+(\d+)", re.MULTILINE)
_AVA = re.compile(r"^\s*(\d+) (?:tests?|known failures?) (passed|failed|skipped|todo)\b", re.MULTILINE)


def js_summary(output: str) -> tuple[int, int, int, int] | None:
    """(total, passed, failed, skipped) from the summary of node's test runner, jest, vitest,
    mocha, uvu or ava, the first that printed one (pure); None when none did."""
    values: dict[str, int] = {}
    for key, n in _NODE.findall(output):
        values[key] = values.get(key, 0) + int(n)  # several files: several summaries under npm
    if "tests" in values:
        return (
            values["tests"],
            values.get("pass", 0),
            values.get("fail", 0) + values.get("cancelled", 0),
            values.get("skipped", 0) + values.get("todo", 0),
        )
    for pattern in (_JEST, _VITEST):
        if (line := pattern.search(output)) is not None:
            parts = {kind: int(n) for n, kind in _JEST_PART.findall(line.group(1))}
            return (
                int(line.group(2)),
                parts.get("passed", 0),
                parts.get("failed", 0),
                parts.get("skipped", 0) + parts.get("todo", 0) + parts.get("pending", 0),
            )
    counts: dict[str, int] = {}
    for regex, names in (
        (_MOCHA, ("passing", "failing", "pending")),
        (_AVA, ("passed", "failed", "skipped")),
    ):
        for n, kind in regex.findall(output):
            counts[kind] = counts.get(kind, 0) + int(n)
        if counts:
            passed, failed, skipped = (counts.get(name, 0) for name in names)
            skipped += counts.get("todo", 0)
            return passed + failed + skipped, passed, failed, skipped
    if (uvu := _UVU.search(output)) is not None:
        total, passed, skipped = (int(g) for g in uvu.groups())
        return total, passed, total - passed - skipped, skipped
    return None


_CARGO = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
_GO = re.compile(r"^\s*--- (PASS|FAIL|SKIP): ", re.MULTILINE)


def toolchain_env() -> dict[str, str]:
    """What the runners need from the parent environment: the sandbox gives every run a fresh
    HOME, where rustup and cargo would find no toolchain."""
    home = Path(os.environ.get("HOME", "~")).expanduser()
    env = {
        "CARGO_HOME": os.environ.get("CARGO_HOME", str(home / ".cargo")),
        "RUSTUP_HOME": os.environ.get("RUSTUP_HOME", str(home / ".rustup")),
        "CARGO_TERM_COLOR": "never",
        "NO_COLOR": "1",
        "CI": "1",
    }
    for name in ("GOPATH", "GOMODCACHE", "GOFLAGS", "npm_config_cache"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def counts_from_output(runner: str, exit_code: int, output: str, group: str = "own") -> TestGroupResult:
    """One runner's result from its console summary (pure); see the module docstring."""
    total = passed = failed = skipped = 0
    found = False
    if runner == "node":
        if (summary := js_summary(output)) is not None:
            found = True
            total, passed, failed, skipped = summary
    elif runner == "cargo":
        results = _CARGO.findall(output)
        if results:
            found = True
            passed = sum(int(p) for p, _, _ in results)
            failed = sum(int(f) for _, f, _ in results)
            skipped = sum(int(i) for _, _, i in results)
            total = passed + failed + skipped
    elif runner == "go":
        marks = _GO.findall(output)
        if marks:
            found = True
            passed, failed, skipped = marks.count("PASS"), marks.count("FAIL"), marks.count("SKIP")
            total = len(marks)
    if found:
        errors = 1 if exit_code != 0 and not failed else 0  # it failed outside any test (a build error)
        note = (
            f"{runner}: exit {exit_code} with no failing test: failed outside the tests\n" if errors else ""
        )
        return TestGroupResult(
            group=group,
            total=total + errors,
            passed=passed,
            failed=failed,
            errors=errors,
            skipped=skipped,
            output=tail(note + output),
        )
    if runner == "cargo" and exit_code != 0:
        return TestGroupResult(
            group=group,
            total=1,
            errors=1,
            output=tail(f"could not run: cargo test did not build (exit {exit_code})\n{output}"),
        )
    # No summary to read: the suite is one test, judged by its exit code.
    return TestGroupResult(
        group=group,
        total=1,
        passed=int(exit_code == 0),
        failed=int(exit_code != 0),
        output=tail(
            f"{runner}: no per-test summary in the output; counted by exit code {exit_code}\n{output}"
        ),
    )


async def run_own_pytest(
    sandbox: Sandbox, path: Path, py: TargetPython, timeout: float = TIMEOUT
) -> TestGroupResult:
    """A Python repository's own suite at `path`, in its env `py`, with the project itself
    installed from that checkout for this run only (its metadata is what
    `importlib.metadata.version(...)` tests read; a `src/` layout is importable only so). The
    output's head line says which interpreter ran it, with which plugins, and whether the project
    could be installed. The tester and the rules engine's validation both run the suite this way."""
    with tempfile.TemporaryDirectory(prefix="repo-pilot-project-") as scratch:
        site = Path(scratch) / "site"
        not_installed = await install_project(py.executable, path, sandbox, site)
        result = await run_pytest(
            sandbox,
            path,
            timeout=timeout,
            group="own",
            python=py.executable,
            plugins=py.plugins,
            pythonpath=None if not_installed else str(site),
        )
    plugins = f"; plugins: {', '.join(py.plugins)}" if py.plugins else "; no pytest plugins autoloaded"
    project = not_installed or "project installed from this checkout"
    return result.model_copy(
        update={"output": f"python: {py.executable} ({py.note}{plugins}; {project})\n{result.output}"}
    )


def not_run(runner: str, why: str, group: str = "own") -> TestGroupResult:
    """The suite could not run at all: one error with the reason (never "0 of 0 passed")."""
    return TestGroupResult(group=group, total=1, errors=1, output=f"could not run: {why}")


async def run_ecosystem_suite(
    sandbox: Sandbox, repo: Path, language: str, timeout: float = TIMEOUT, group: str = "own"
) -> TestGroupResult:
    """Run the own tests of a JavaScript/TypeScript, Rust or Go repository (see the module docstring)."""
    repo = Path(repo)
    env = toolchain_env()
    if language == "javascript":
        if shutil.which("node") is None:
            return not_run("node", "node is not installed, so the JavaScript tests were not run", group)
        package = _package_json(repo)
        script = (
            (package.get("scripts") or {}).get("test") if isinstance(package.get("scripts"), dict) else None
        )
        uses_script = isinstance(script, str) and script.strip() and "no test specified" not in script
        if uses_script and shutil.which("npm") is None:
            return not_run("npm", "npm is not installed, so `npm test` was not run", group)
        notes = await _npm_install(sandbox, repo, package, env, timeout)
        cmd = ["npm", "test"] if uses_script else ["node", "--test"]
        done = await sandbox.run(cmd, cwd=repo, timeout=timeout, env=env)
        runner = "node"
    elif language == "rust":
        if shutil.which("cargo") is None:
            return not_run("cargo", "cargo is not installed, so `cargo test` was not run", group)
        notes = await _fetch(sandbox, repo, ["cargo", "fetch"], env, timeout)
        done = await sandbox.run(
            ["cargo", "test", "--offline", "--color", "never"], cwd=repo, timeout=timeout, env=env
        )
        runner = "cargo"
    elif language == "go":
        if shutil.which("go") is None:
            return not_run("go", "go is not installed here, so `go test ./...` was not run", group)
        notes = await _fetch(sandbox, repo, ["go", "mod", "download"], env, timeout)
        done = await sandbox.run(["go", "test", "-v", "./..."], cwd=repo, timeout=timeout, env=env)
        runner = "go"
    else:
        return not_run(language, f"no test runner is known for {language}", group)
    if done.timed_out:
        return not_run(
            runner,
            f"`{' '.join(cmd if language == 'javascript' else [runner, 'test'])}` timed out "
            f"after {timeout:g}s\n{tail(done.stdout)}",
            group,
        )
    return _counted(runner, done, notes, group)


def _counted(runner: str, done, notes: str, group: str) -> TestGroupResult:
    output = done.stdout + "\n" + done.stderr
    if done.exit_code == 127 and not _has_summary(runner, output):
        # the shell found no such command: a test runner that was never installed
        why = "the test command was not found (exit 127)"
        return not_run(runner, f"{why}{'; ' + notes.strip() if notes else ''}\n{tail(output)}", group)
    result = counts_from_output(runner, done.exit_code, output, group)
    return result.model_copy(update={"output": tail(notes + result.output)}) if notes else result


def _has_summary(runner: str, output: str) -> bool:
    pattern = {"cargo": _CARGO, "go": _GO}.get(runner)
    return bool(pattern and pattern.search(output)) or (runner == "node" and js_summary(output) is not None)


async def _npm_install(sandbox: Sandbox, repo: Path, package: dict, env: dict, timeout: float) -> str:
    """The package's dependencies, with the network (the registry) and no install scripts; what
    went wrong, as a note for the result, or ""."""
    if (
        not (package.get("dependencies") or package.get("devDependencies"))
        or (repo / "node_modules").is_dir()
    ):
        return ""
    cmd = [
        "npm",
        "ci" if (repo / "package-lock.json").is_file() else "install",
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
    ]
    installed = await sandbox.run(cmd, cwd=repo, timeout=timeout, env=env, network=True)
    if installed.exit_code == 0:
        return ""
    return f"`{' '.join(cmd)}` failed (exit {installed.exit_code}): {tail(installed.stderr, 600)}\n"


async def _fetch(sandbox: Sandbox, repo: Path, cmd: list[str], env: dict, timeout: float) -> str:
    """The crate's or module's dependencies into the toolchain's own cache (CARGO_HOME, GOMODCACHE),
    with the network and the host filesystem, so the tests after it run offline; what went wrong,
    as a note for the result, or ""."""
    fetched = await sandbox.run(cmd, cwd=repo, timeout=timeout, env=env, network=True, host_fs=True)
    if fetched.exit_code == 0:
        return ""
    return f"`{' '.join(cmd)}` failed (exit {fetched.exit_code}): {tail(fetched.stderr, 600)}\n"


async def run_generated_files(
    sandbox: Sandbox, repo: Path, files: list[str], group: str, timeout: float = TIMEOUT
) -> TestGroupResult:
    """Generated test files of another ecosystem with that ecosystem's runner: `node --test FILES`
    for JavaScript, `cargo test --test NAME…` for Rust integration tests (`tests/NAME.rs`). A file
    no runner here takes is one error, with the reason."""
    env = toolchain_env()
    js = [f for f in files if f.endswith((".js", ".cjs", ".mjs"))]
    rs = [Path(f).stem for f in files if f.endswith(".rs") and Path(f).parent == Path("tests")]
    other = sorted(set(files) - set(js) - {f"tests/{n}.rs" for n in rs})
    jobs = ([("node", ["node", "--test", *js])] if js else []) + (
        [
            (
                "cargo",
                ["cargo", "test", "--offline", "--color", "never", *[a for n in rs for a in ("--test", n)]],
            )
        ]
        if rs
        else []
    )
    parts: list[TestGroupResult] = []
    for runner, cmd in jobs:
        if shutil.which(cmd[0]) is None:
            parts.append(
                not_run(runner, f"{cmd[0]} is not installed, so the generated tests were not run", group)
            )
            continue
        done = await sandbox.run(cmd, cwd=repo, timeout=timeout, env=env)
        if done.timed_out:
            parts.append(
                not_run(runner, f"`{' '.join(cmd)}` timed out after {timeout:g}s\n{tail(done.stdout)}", group)
            )
        else:
            parts.append(_counted(runner, done, "", group))
    if other:
        parts.append(not_run("generated", f"no runner here takes {', '.join(other)}", group))
    return combined(group, parts)


def combined(group: str, parts: list[TestGroupResult]) -> TestGroupResult:
    """One group's result from the results of its runners (counts added, outputs joined; none
    ran: an empty result)."""
    if len(parts) == 1:
        return parts[0]
    return TestGroupResult(
        group=group,
        total=sum(p.total for p in parts),
        passed=sum(p.passed for p in parts),
        failed=sum(p.failed for p in parts),
        errors=sum(p.errors for p in parts),
        skipped=sum(p.skipped for p in parts),
        output=tail("\n".join(p.output for p in parts)),
    )


def _package_json(repo: Path) -> dict:
    try:
        data = json.loads((repo / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
