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
from typing import Any

from shared.adapters import task_commands
from shared.adapters.conflicts import check_conflicts
from shared.adapters.git import git
from shared.adapters.junit import JUnitError, read_junit
from shared.adapters.task_dir import PLUGIN_DIR, read_records
from shared.adapters.workspace import apply_patch, checkout_base, diff_against_base
from shared.events.gen import DEFAULT_MIN_MUTATION_SCORE, DEFAULT_MUTANTS, ConflictReport, FeatureValidated
from shared.policy.generation import proofs
from shared.policy.generation.counts import TestCounts, parse_test_counts
from shared.policy.generation.mutate import Mutant, all_mutants, spread
from shared.policy.generation.newtests import NewTests, Records, added_lines, new_tests
from shared.policy.generation.proofs import Comparison, MutantResult, Proofs, TestRun, run_passed
from shared.policy.generation.split import is_test_path
from shared.policy.generation.task import Task
from shared.policy.generation.verdict import Backend, decide, derive_local_script, pick_backend, report_env
from shared.ports.errors import StepError

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
        score = self.proofs.mutation_score if self.proofs else None
        return FeatureValidated(
            mutants_killed=score[0] if score else None, mutants_total=score[1] if score else None,
            tests_passed=self.tests.passed, passed=self.tests.counts.passed,
            failed=self.tests.counts.failed + self.tests.counts.errors,
            conflicts=list(self.conflicts), valid=self.valid, reason=self.reason,
            result={"backend": self.tests.backend, "exit_code": self.tests.exit_code, "counts_from": self.tests.source,
                    "timed_out": self.tests.timed_out, "output_tail": self.tests.output[-1000:], "proofs": proofs},
        )


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


_CONTAINER_PLUGIN, _CONTAINER_JUNIT = "/repo-pilot/plugin", "/repo-pilot/junit"


def read_counts(junit_dir: Path, output: str) -> tuple[TestCounts, list[str], str]:
    """Counts, failing names and their source; see `read_run` for the per-test records too."""
    counts, failing, source, _ = read_run(junit_dir, output)
    return counts, failing, source


def read_run(junit_dir: Path, output: str) -> tuple[TestCounts, list[str], str, Records | None]:
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
        return counts, [name for t in totals for name in t.failing], "junit", read_records(junit_dir)
    counts = parse_test_counts(output)
    return counts, [], "console" if counts.found else "none", read_records(junit_dir)


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
    counts, failing, source, records = read_run(junit_dir, output)
    return TestRun(run_passed(exit_code, timed_out, counts), counts, exit_code, "docker", [tag, *command],
                   output[-OUTPUT_TAIL:], timed_out, source=source, failing=failing, records=records)


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
        self.env = task_commands.base_env({"UV_CACHE_DIR": str(cache)})

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
        result = task_commands.run_sync(cmd, cwd=self.repo, timeout=self.timeout, env=env)
        counts, failing, source, records = read_run(junit_dir, result.output)
        return TestRun(run_passed(result.exit_code, result.timed_out, counts), counts, result.exit_code, "local",
                       cmd, result.output[-OUTPUT_TAIL:], result.timed_out, result.duration, source, failing,
                       records)


def run_task_tests(task: Task, repo: Path, feature_patch: str, tests_patch: str,
                   backend: Backend = "auto", timeout: float = 900.0) -> TestRun:
    """Run the task's tests with both patches applied to `repo` (a clean checkout at the base)."""
    base = git(repo, "rev-parse", "--verify", "HEAD^{commit}")
    with tempfile.TemporaryDirectory(prefix="repo-pilot-tests-") as tmp:
        return TaskTests(task, repo, base, Path(tmp), backend, timeout).run(tests_patch, feature_patch)


# Runs that do not depend on the candidate (the base's own tests, each existing feature's tests
# with that feature): run once per process for every attempt on the same task (attempts, dataset
# runs, a service replica).
_BASE_RUNS: dict[tuple[str, ...], TestRun] = {}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _cached_run(runner: TaskTests, tests_patch: str, feature_patch: str | None) -> TestRun:
    script = runner.task.run_tests_sh.read_text() if runner.task.run_tests_sh else runner.task.runner_sh
    key = (str(runner.task.path), runner.base, runner.backend, _digest(script), _digest(tests_patch),
           _digest(feature_patch or ""))
    if key not in _BASE_RUNS:
        _BASE_RUNS[key] = runner.run(tests_patch, feature_patch)
    return _BASE_RUNS[key]


_UNCHANGED = "# repo-pilot: this file is unchanged; the line makes the task's runner run it\n"


class Scratch:
    """A checkout at the base where patches are combined, mutated or made; clean after each use."""

    def __init__(self, repo: Path, base: str):
        self.repo, self.base = repo, base

    def _clean(self) -> None:
        git(self.repo, "reset", "--quiet", "--hard", self.base)
        git(self.repo, "clean", "-fdxq")

    def combined(self, *patches: str) -> tuple[str | None, str]:
        """The patches applied one after the other, as one patch; (None, why) when they do not."""
        try:
            for n, patch in enumerate(patches, 1):
                why = apply_patch(self.repo, patch)
                if why is not None:
                    return None, f"patch {n} does not apply after the others: {why.splitlines()[0]}"
            return diff_against_base(self.repo, self.base), ""
        finally:
            self._clean()

    def unchanged_tests_patch(self, paths: list[str]) -> str | None:
        """A tests.patch that only adds a comment line to each of `paths` present at the base, so
        the task's runner runs those files as they are: the base's own tests. None when none is."""
        try:
            present = [p for p in dict.fromkeys(paths) if (self.repo / p).is_file() and p.endswith(".py")]
            for p in present:
                with (self.repo / p).open("a") as out:
                    out.write("\n" + _UNCHANGED)
            return diff_against_base(self.repo, self.base) if present else None
        finally:
            self._clean()

    def mutants(self, feature_patch: str, limit: int) -> tuple[list[tuple[Mutant, str]], str]:
        """Up to `limit` mutants of the source lines `feature_patch` adds, each as a whole
        feature.patch; ([], why) when there is none."""
        try:
            why = apply_patch(self.repo, feature_patch)
            if why is not None:
                return [], f"the feature patch does not apply: {why.splitlines()[0]}"
            lines = {p: n for p, n in added_lines(feature_patch).items() if p.endswith(".py") and not is_test_path(p)}
            if not lines:
                return [], "the feature adds no Python source line (the mutator reads Python only)"
            found = [m for p, n in sorted(lines.items()) for m in all_mutants(p, (self.repo / p).read_text(), n)]
            out = []
            for m in spread(found, limit):
                original = (self.repo / m.path).read_text()
                (self.repo / m.path).write_text(m.source)
                out.append((m, diff_against_base(self.repo, self.base)))
                git(self.repo, "reset", "--quiet")
                (self.repo / m.path).write_text(original)
            return out, "" if out else "no line the feature adds can be mutated"
        finally:
            self._clean()


def killed(run: TestRun, new: NewTests | None) -> tuple[bool, str]:
    """Whether the new tests fail on a mutant's run, and which (pure)."""
    if run.timed_out:
        return True, "timed out"
    if new is not None and run.records is not None:
        failing = [i for i in new.ids if i not in run.records.tests
                   or run.records.tests[i].outcome in ("failed", "error", "not run")]
        return (True, f"{failing[0]} fails") if failing else (False, "every new test passes")
    return (not run.passed, run.summary())


def prove(runner: TaskTests, task: Task, feature_patch: str, tests_patch: str, scratch: Scratch, *,
          mutant_limit: int = DEFAULT_MUTANTS, min_score: float = DEFAULT_MIN_MUTATION_SCORE,
          all_proofs: bool = False) -> tuple[Proofs, TestRun, TestRun | None]:
    """The five test proofs for a feature.patch / tests.patch pair (see `proofs`), in order,
    stopping at the first that fails unless `all_proofs`."""
    with_feature = runner.run(tests_patch, feature_patch)
    new = new_tests(with_feature.records, tests_patch) if with_feature.records is not None else None
    found = {"new_tests_ran": proofs.new_tests_ran(with_feature, new),
             "pass_with_feature": proofs.pass_with_feature(with_feature)}
    go_on = all_proofs or all(p.ok for p in found.values())
    if not found["new_tests_ran"].ok:
        go_on = False  # nothing ran: the rest cannot say anything
    without = runner.run(tests_patch, None) if go_on else None
    found["fail_without_feature"] = proofs.fail_without_feature(without, new.ids if new else None)
    go_on = go_on and (all_proofs or found["fail_without_feature"].ok)
    if go_on:
        made, why = scratch.mutants(feature_patch, mutant_limit)
        results = []
        for mutant, patch in made:
            hit, what = killed(runner.run(tests_patch, patch), new)
            results.append(MutantResult(mutant.description, hit, what))
        found["kills_mutants"] = proofs.kills_mutants(results, min_score, why)
    else:
        found["kills_mutants"] = proofs.not_run()
    go_on = go_on and (all_proofs or found["kills_mutants"].ok)
    found["existing_tests"] = (proofs.existing_tests(existing_comparisons(runner, task, feature_patch, tests_patch,
                                                                          scratch))
                               if go_on else proofs.not_run())
    return Proofs(**found), with_feature, without


def existing_comparisons(runner: TaskTests, task: Task, feature_patch: str, tests_patch: str,
                         scratch: Scratch) -> list[Comparison]:
    """The base's own tests, and each existing feature's tests with that feature, before and
    after the candidate; "not checkable" with the reason where no comparison can be made."""
    paths = [*added_lines(tests_patch), *(p for f in task.features if f.tests_patch.strip()
                                          for p in added_lines(f.tests_patch))]
    out = []
    own = scratch.unchanged_tests_patch(paths)
    if own is None:
        out.append(Comparison("the base's own tests", "not checkable",
                              "none of the task's test files exists at the base"))
    else:
        out.append(proofs.compare("the base's own tests", _cached_run(runner, own, None), runner.run(own, feature_patch)))
    for f in task.features:
        what = f"feature {f.number}"
        if not f.tests_patch.strip():
            out.append(Comparison(what, "not checkable", "it has no tests.patch"))
            continue
        together, why = scratch.combined(f.feature_patch, feature_patch)
        if together is None:
            out.append(Comparison(what, "not checkable", f"it and the candidate do not apply together ({why})"))
            continue
        out.append(proofs.compare(what, _cached_run(runner, f.tests_patch, f.feature_patch),
                                  runner.run(f.tests_patch, together)))
    return out


def validate_patches(task: Task, source: str, feature_patch: str, tests_patch: str, *,
                     backend: Backend = "auto", min_conflicts: int = 1, timeout: float = 900.0,
                     workdir: Path | None = None, uv_cache_dir: Path | None = None,
                     mutants: int = DEFAULT_MUTANTS, min_mutation_score: float = DEFAULT_MIN_MUTATION_SCORE,
                     all_proofs: bool = False) -> ValidationResult:
    """Test proofs and conflicts for one feature.patch / tests.patch pair against `task`.
    Raises StepError for a pair that cannot be validated at all (an empty tests patch)."""
    if not tests_patch.strip():
        raise StepError("the tests patch is empty", hint="a feature needs tests that test it")
    with tempfile.TemporaryDirectory(prefix="repo-pilot-validate-", dir=workdir) as tmp:
        tests_repo, merge_repo, work_repo = Path(tmp) / "tests", Path(tmp) / "merge", Path(tmp) / "work"
        base = checkout_base(source, task.base_commit, tests_repo)
        checkout_base(str(tests_repo), base, merge_repo)  # local clones: one network fetch, not three
        checkout_base(str(tests_repo), base, work_repo)
        runner = TaskTests(task, tests_repo, base, Path(tmp) / "runs", backend, timeout, uv_cache_dir)
        found, with_feature, without = prove(runner, task, feature_patch, tests_patch, Scratch(work_repo, base),
                                             mutant_limit=mutants, min_score=min_mutation_score,
                                             all_proofs=all_proofs)
        conflicts = check_conflicts(merge_repo, base, feature_patch, task.features)
    valid, reason = decide(found, conflicts, min_conflicts)
    return ValidationResult(valid, reason, with_feature, conflicts, min_conflicts, found, without)
