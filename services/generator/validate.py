"""Validating a feature: its tests prove it (`proofs`), and it conflicts with existing features.

Tests run through `runner.sh` in Docker with the task image when a Docker engine answers
(backend "docker", or "auto" with a Dockerfile), else through `run_tests.sh <repo> <tests.patch>
[<feature.patch>]` on a local checkout in the local sandbox. A task without run_tests.sh gets one
derived from runner.sh (container paths swapped for local ones, package installs dropped).
Counts come from JUnit reports that every pytest session of the script writes (a small plugin
loaded through `PYTEST_PLUGINS`); console summaries are the fallback for other runners.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.generator import proc, proofs
from services.generator.conflicts import check_conflicts
from services.generator.counts import TestCounts, parse_test_counts
from services.generator.proofs import Proofs, TestRun, run_passed
from services.generator.task import Task
from services.generator.workspace import checkout_base
from shared.adapters.git import git
from shared.adapters.junit import JUnitError, read_junit
from shared.events.gen import ConflictReport, FeatureValidated
from shared.ports.errors import StepError

Backend = Literal["docker", "local", "auto"]
OUTPUT_TAIL = 4000


@dataclass
class ValidationResult:
    valid: bool
    reason: str
    tests: TestRun  # the new tests with the feature
    conflicts: list[ConflictReport] = field(default_factory=list)
    min_conflicts: int = 1
    proofs: Proofs | None = None
    without_feature: TestRun | None = None

    @property
    def conflicting_features(self) -> list[int]:
        return [c.feature for c in self.conflicts if c.status == "conflict"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "reason": self.reason,
            "min_conflicts": self.min_conflicts,
            **(self.proofs.to_dict() if self.proofs else {}),
            "tests": self.tests.to_dict(),
            "tests_without_feature": self.without_feature.to_dict() if self.without_feature else None,
            "conflicting_features": self.conflicting_features,
            "conflicts": [c.model_dump() for c in self.conflicts],
        }

    def to_payload(self) -> FeatureValidated:
        proofs = self.proofs.to_dict() if self.proofs else {}
        for proof in proofs.values():
            proof.pop("detail", None)  # per-feature detail stays in result.json; events stay small
        return FeatureValidated(
            tests_passed=self.tests.passed, passed=self.tests.counts.passed,
            failed=self.tests.counts.failed + self.tests.counts.errors,
            conflicts=list(self.conflicts), valid=self.valid, reason=self.reason,
            result={"backend": self.tests.backend, "exit_code": self.tests.exit_code, "counts_from": self.tests.source,
                    "timed_out": self.tests.timed_out, "output_tail": self.tests.output[-1000:], "proofs": proofs},
        )


def decide(proofs: Proofs, conflicts: list[ConflictReport], min_conflicts: int) -> tuple[bool, str]:
    """Valid = the four test proofs hold and at least `min_conflicts` existing features conflict (pure)."""
    reasons = proofs.reasons()
    n = sum(1 for c in conflicts if c.status == "conflict")
    if n < min_conflicts:
        unapplied = [c.feature for c in conflicts if c.status == "could_not_apply"]
        extra = f"; could not apply against features {unapplied}" if unapplied else ""
        reasons.append(f"{n} conflict(s) with existing features, at least {min_conflicts} required{extra}")
    if reasons:
        return False, "; ".join(reasons)
    return True, (f"new tests ran ({proofs.new_tests_ran.counts.get('total', 0)}), pass with the feature, fail "
                  f"without it, existing features' tests still pass; conflicts with {n} feature(s)")


def pick_backend(prefer: Backend, docker_answers: bool, has_dockerfile: bool) -> Literal["docker", "local"]:
    """Docker when asked or when 'auto' finds an engine and an image recipe; else local (pure)."""
    if prefer == "docker":
        if not docker_answers:
            raise StepError("--backend docker: no Docker engine answers", hint="use --backend local")
        return "docker"
    if prefer == "auto" and docker_answers and has_dockerfile:
        return "docker"
    return "local"


def docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no engine"; the local backend runs instead
        return False


_INSTALL = re.compile(r"^\s*(?:pip3?|python3? -m pip|uv pip|apt-get|apt|apk|npm (?:ci|install)|yarn install|"
                      r"pnpm install)\b")


def derive_local_script(runner_sh: str, repo: Path, patch_dir: Path) -> str:
    """runner.sh rewritten for a local checkout: /workspace/repo -> repo, /patches -> patch_dir (pure).

    Package installs are dropped: locally the environment is the caller's, not the image's.
    """
    lines = []
    for line in runner_sh.splitlines():
        if _INSTALL.match(line):
            lines.append(f"# dropped for the local run: {line.strip()}")
            continue
        lines.append(line.replace("/workspace/repo", str(repo)).replace("/patches", str(patch_dir)))
    return "\n".join(lines) + "\n"


PLUGIN_DIR = Path(__file__).parent / "pytest_plugin"
_CONTAINER_PLUGIN, _CONTAINER_JUNIT = "/repo-pilot/plugin", "/repo-pilot/junit"


def report_env(junit_dir: str, plugin_dir: str, pythonpath: str | None = None) -> dict[str, str]:
    """Variables that make every pytest session of a task script write its own JUnit report (pure)."""
    return {"REPO_PILOT_JUNIT_DIR": junit_dir, "PYTEST_PLUGINS": "repo_pilot_junit",
            "PYTHONPATH": plugin_dir + (f":{pythonpath}" if pythonpath else "")}


def read_counts(junit_dir: Path, output: str) -> tuple[TestCounts, list[str], str]:
    """Counts from the JUnit reports in `junit_dir`, summed; the console output only when there are none."""
    totals = []
    for report in sorted(junit_dir.glob("*.xml")):
        try:
            totals.append(read_junit(report))
        except JUnitError:
            continue  # a session killed mid-write; the others still count
    if totals:
        counts = TestCounts(passed=sum(t.passed for t in totals), failed=sum(t.failed for t in totals),
                            errors=sum(t.errors for t in totals), skipped=sum(t.skipped for t in totals),
                            framework="junit")
        return counts, [name for t in totals for name in t.failing], "junit"
    counts = parse_test_counts(output)
    return counts, [], "console" if counts.found else "none"


def _run_docker(task: Task, patch_dir: Path, junit_dir: Path, with_feature: bool, timeout: float) -> TestRun:
    import docker

    client = docker.from_env()
    tag = f"repo-pilot-task:{re.sub(r'[^a-z0-9_.-]', '-', task.name.lower())}"
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        client.images.build(path=str(task.path), tag=tag, rm=True)
    command = ["tests.patch", "feature.patch"] if with_feature else ["tests.patch"]
    # The runner installs the package itself, so the container keeps its network.
    container = client.containers.run(
        tag, command=command, detach=True, mem_limit="4g", pids_limit=1024,
        environment=report_env(_CONTAINER_JUNIT, _CONTAINER_PLUGIN),
        volumes={str(patch_dir): {"bind": "/patches", "mode": "ro"},
                 str(PLUGIN_DIR): {"bind": _CONTAINER_PLUGIN, "mode": "ro"},
                 str(junit_dir): {"bind": _CONTAINER_JUNIT, "mode": "rw"}})
    timed_out = False
    try:
        try:
            exit_code = container.wait(timeout=timeout)["StatusCode"]
        except Exception:  # noqa: BLE001 - the docker SDK raises a requests timeout here
            timed_out, exit_code = True, -9
            container.kill()
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    counts, failing, source = read_counts(junit_dir, output)
    return TestRun(run_passed(exit_code, timed_out, counts), counts, exit_code, "docker", [tag, *command],
                   output[-OUTPUT_TAIL:], timed_out, source=source, failing=failing)


def _reset_checkout(repo: Path, base: str) -> None:
    """Back to the clean base between runs, whatever the task's script left behind."""
    git(repo, "reset", "--quiet", "--hard", base)
    git(repo, "clean", "-fdxq")


class TaskTests:
    """Runs the task's test script on one checkout at the base: the backend is chosen once, a uv
    cache is shared by the runs, and the checkout is reset before each run."""

    def __init__(self, task: Task, repo: Path, base: str, scratch: Path, backend: Backend = "auto",
                 timeout: float = 900.0, uv_cache_dir: Path | None = None):
        self.task, self.repo, self.base, self.scratch, self.timeout = task, repo, base, scratch, timeout
        self.backend = pick_backend(backend, docker_answers() if backend != "local" else False,
                                    task.dockerfile is not None)
        self.runs = 0
        # The user's UV_CACHE_DIR, else ours (kept across validations when given), else this one's.
        cache = Path(os.environ.get("UV_CACHE_DIR") or uv_cache_dir or scratch / "uv-cache")
        cache.mkdir(parents=True, exist_ok=True)
        self.env = proc.base_env({"UV_CACHE_DIR": str(cache)})

    def run(self, tests_patch: str, feature_patch: str | None) -> TestRun:
        """`tests_patch` with `feature_patch` (None: tests.patch alone, as run_tests.sh allows)."""
        self.runs += 1
        run_dir = self.scratch / f"run{self.runs}"
        junit_dir = run_dir / "junit"
        junit_dir.mkdir(parents=True)
        (run_dir / "tests.patch").write_text(tests_patch)
        if feature_patch is not None:
            (run_dir / "feature.patch").write_text(feature_patch)
        _reset_checkout(self.repo, self.base)
        if self.backend == "docker":
            return _run_docker(self.task, run_dir, junit_dir, feature_patch is not None, self.timeout)
        patches = [str(run_dir / "tests.patch")] + ([str(run_dir / "feature.patch")] if feature_patch is not None
                                                    else [])
        if self.task.run_tests_sh is not None:
            cmd = ["bash", str(self.task.run_tests_sh), str(self.repo), *patches]
        else:
            script = run_dir / "run_local.sh"
            script.write_text(derive_local_script(self.task.runner_sh, self.repo, run_dir))
            cmd = ["bash", str(script), *(Path(p).name for p in patches)]
        env = {**self.env, **report_env(str(junit_dir), str(PLUGIN_DIR), self.env.get("PYTHONPATH"))}
        result = proc.run_sync(cmd, cwd=self.repo, timeout=self.timeout, env=env)
        counts, failing, source = read_counts(junit_dir, result.output)
        return TestRun(run_passed(result.exit_code, result.timed_out, counts), counts, result.exit_code, "local",
                       cmd, result.output[-OUTPUT_TAIL:], result.timed_out, result.duration, source, failing)


def run_task_tests(task: Task, repo: Path, feature_patch: str, tests_patch: str,
                   backend: Backend = "auto", timeout: float = 900.0) -> TestRun:
    """Run the task's tests with both patches applied to `repo` (a clean checkout at the base)."""
    base = git(repo, "rev-parse", "--verify", "HEAD^{commit}")
    with tempfile.TemporaryDirectory(prefix="repo-pilot-tests-") as tmp:
        return TaskTests(task, repo, base, Path(tmp), backend, timeout).run(tests_patch, feature_patch)


# An existing feature's tests on the base (its tests.patch alone) do not depend on the new feature:
# run once per process for every attempt on the same task (attempts, dataset runs, a service replica).
_BASE_RUNS: dict[tuple[str, ...], TestRun] = {}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _base_run(runner: TaskTests, tests_patch: str) -> TestRun:
    script = runner.task.run_tests_sh.read_text() if runner.task.run_tests_sh else runner.task.runner_sh
    key = (str(runner.task.path), runner.base, runner.backend, _digest(script), _digest(tests_patch))
    if key not in _BASE_RUNS:
        _BASE_RUNS[key] = runner.run(tests_patch, None)
    return _BASE_RUNS[key]


def prove(runner: TaskTests, task: Task, feature_patch: str, tests_patch: str) -> tuple[Proofs, TestRun, TestRun | None]:
    """The four test proofs for a feature.patch / tests.patch pair (see `proofs`)."""
    with_feature = runner.run(tests_patch, feature_patch)
    ran, passes = proofs.new_tests_ran(with_feature), proofs.pass_with_feature(with_feature)
    if not (ran.ok and passes.ok):
        return (proofs.Proofs(ran, passes, proofs.fail_without_feature(None),
                              proofs.existing_tests(None, "the new tests do not pass with the feature")),
                with_feature, None)
    without = runner.run(tests_patch, None)
    checks = [proofs.FeatureCheck(f.number, _base_run(runner, f.tests_patch), runner.run(f.tests_patch, feature_patch))
              for f in task.features if f.tests_patch.strip()]
    return (proofs.Proofs(ran, passes, proofs.fail_without_feature(without), proofs.existing_tests(checks)),
            with_feature, without)


def validate_patches(task: Task, source: str, feature_patch: str, tests_patch: str, *,
                     backend: Backend = "auto", min_conflicts: int = 1, timeout: float = 900.0,
                     workdir: Path | None = None, uv_cache_dir: Path | None = None) -> ValidationResult:
    """Test proofs and conflicts for one feature.patch / tests.patch pair against `task`."""
    with tempfile.TemporaryDirectory(prefix="repo-pilot-validate-", dir=workdir) as tmp:
        tests_repo, merge_repo = Path(tmp) / "tests", Path(tmp) / "merge"
        base = checkout_base(source, task.base_commit, tests_repo)
        checkout_base(str(tests_repo), base, merge_repo)  # a local clone: one network fetch, not two
        runner = TaskTests(task, tests_repo, base, Path(tmp) / "runs", backend, timeout, uv_cache_dir)
        found, with_feature, without = prove(runner, task, feature_patch, tests_patch)
        conflicts = check_conflicts(merge_repo, base, feature_patch, task.features)
    valid, reason = decide(found, conflicts, min_conflicts)
    return ValidationResult(valid, reason, with_feature, conflicts, min_conflicts, found, without)
