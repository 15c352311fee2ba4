"""Validating a feature: the task's tests pass with it, and it conflicts with existing features.

Tests run through `runner.sh` in Docker with the task image when a Docker engine answers
(backend "docker", or "auto" with a Dockerfile), else through `run_tests.sh <repo> <tests.patch>
<feature.patch>` on a local checkout. A task without run_tests.sh gets one derived from runner.sh
(container paths swapped for local ones, package installs dropped).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.generator import proc
from services.generator.conflicts import check_conflicts
from services.generator.counts import TestCounts, parse_test_counts
from services.generator.task import Task
from services.generator.workspace import checkout_base
from shared.events.gen import ConflictReport, FeatureValidated
from shared.ports.errors import StepError

Backend = Literal["docker", "local", "auto"]
OUTPUT_TAIL = 4000


@dataclass
class TestRun:
    __test__ = False

    passed: bool
    counts: TestCounts
    exit_code: int
    backend: str
    command: list[str]
    output: str = ""
    timed_out: bool = False
    duration: float = 0.0


@dataclass
class ValidationResult:
    valid: bool
    reason: str
    tests: TestRun
    conflicts: list[ConflictReport] = field(default_factory=list)
    min_conflicts: int = 1

    @property
    def conflicting_features(self) -> list[int]:
        return [c.feature for c in self.conflicts if c.status == "conflict"]

    def to_dict(self) -> dict[str, Any]:
        tests = asdict(self.tests)
        tests["counts"]["total"] = self.tests.counts.total
        return {
            "valid": self.valid,
            "reason": self.reason,
            "min_conflicts": self.min_conflicts,
            "tests": tests,
            "conflicting_features": self.conflicting_features,
            "conflicts": [c.model_dump() for c in self.conflicts],
        }

    def to_payload(self) -> FeatureValidated:
        return FeatureValidated(
            tests_passed=self.tests.passed, passed=self.tests.counts.passed,
            failed=self.tests.counts.failed + self.tests.counts.errors,
            conflicts=list(self.conflicts), valid=self.valid, reason=self.reason,
            result={"backend": self.tests.backend, "exit_code": self.tests.exit_code,
                    "timed_out": self.tests.timed_out, "output_tail": self.tests.output[-1000:]},
        )


def decide(tests: TestRun, conflicts: list[ConflictReport], min_conflicts: int) -> tuple[bool, str]:
    """Valid = tests pass and at least `min_conflicts` existing features conflict (pure)."""
    reasons = []
    if not tests.passed:
        c = tests.counts
        why = "timed out" if tests.timed_out else f"exit code {tests.exit_code}"
        reasons.append(f"tests failed ({why}; {c.passed} passed, {c.failed} failed, {c.errors} errors)")
    n = sum(1 for c in conflicts if c.status == "conflict")
    if n < min_conflicts:
        unapplied = [c.feature for c in conflicts if c.status == "could_not_apply"]
        extra = f"; could not apply against features {unapplied}" if unapplied else ""
        reasons.append(f"{n} conflict(s) with existing features, at least {min_conflicts} required{extra}")
    return (not reasons, "; ".join(reasons) or f"tests pass and conflicts with {n} feature(s)")


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


def _run_docker(task: Task, patch_dir: Path, timeout: float) -> TestRun:
    import docker

    client = docker.from_env()
    tag = f"repo-pilot-task:{re.sub(r'[^a-z0-9_.-]', '-', task.name.lower())}"
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        client.images.build(path=str(task.path), tag=tag, rm=True)
    command = ["tests.patch", "feature.patch"]
    # The runner installs the package itself, so the container keeps its network.
    container = client.containers.run(tag, command=command, detach=True, mem_limit="4g", pids_limit=1024,
                                      volumes={str(patch_dir): {"bind": "/patches", "mode": "ro"}})
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
    counts = parse_test_counts(output)
    passed = exit_code == 0 and not timed_out and counts.failed == 0 and counts.errors == 0
    return TestRun(passed, counts, exit_code, "docker", [tag, *command], output[-OUTPUT_TAIL:], timed_out)


def run_task_tests(task: Task, repo: Path, feature_patch: str, tests_patch: str,
                   backend: Backend = "auto", timeout: float = 900.0) -> TestRun:
    """Run the task's tests with both patches applied to `repo` (a clean checkout at the base)."""
    chosen = pick_backend(backend, docker_answers() if backend != "local" else False, task.dockerfile is not None)
    with tempfile.TemporaryDirectory(prefix="repo-pilot-patches-") as tmp:
        patch_dir = Path(tmp)
        (patch_dir / "feature.patch").write_text(feature_patch)
        (patch_dir / "tests.patch").write_text(tests_patch)
        if chosen == "docker":
            return _run_docker(task, patch_dir, timeout)
        if task.run_tests_sh is not None:
            cmd = ["bash", str(task.run_tests_sh), str(repo), str(patch_dir / "tests.patch"),
                   str(patch_dir / "feature.patch")]
        else:
            script = patch_dir / "run_local.sh"
            script.write_text(derive_local_script(task.runner_sh, repo, patch_dir))
            cmd = ["bash", str(script), "tests.patch", "feature.patch"]
        result = proc.run_sync(cmd, cwd=repo, timeout=timeout, env=proc.base_env())
    counts = parse_test_counts(result.output)
    passed = result.exit_code == 0 and not result.timed_out and counts.failed == 0 and counts.errors == 0
    return TestRun(passed, counts, result.exit_code, "local", cmd, result.output[-OUTPUT_TAIL:],
                   result.timed_out, result.duration)


def validate_patches(task: Task, source: str, feature_patch: str, tests_patch: str, *,
                     backend: Backend = "auto", min_conflicts: int = 1, timeout: float = 900.0,
                     workdir: Path | None = None) -> ValidationResult:
    """Tests and conflicts for one feature.patch / tests.patch pair against `task`."""
    with tempfile.TemporaryDirectory(prefix="repo-pilot-validate-", dir=workdir) as tmp:
        tests_repo, merge_repo = Path(tmp) / "tests", Path(tmp) / "merge"
        base = checkout_base(source, task.base_commit, tests_repo)
        checkout_base(str(tests_repo), base, merge_repo)  # a local clone: one network fetch, not two
        tests = run_task_tests(task, tests_repo, feature_patch, tests_patch, backend, timeout)
        conflicts = check_conflicts(merge_repo, base, feature_patch, task.features)
    valid, reason = decide(tests, conflicts, min_conflicts)
    return ValidationResult(valid, reason, tests, conflicts, min_conflicts)
