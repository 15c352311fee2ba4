"""The generator's validation decisions (pure): which backend runs a task's tests, the local form of
its runner script, the environment that makes every pytest session report, and the verdict over
the proofs and the merges. `shared.engines.generator.validate` does the running."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from shared.events.gen import ConflictReport
from shared.policy.generation.proofs import Proofs
from shared.ports.errors import StepError

Backend = Literal["docker", "local", "auto"]


def decide(proofs: Proofs, conflicts: list[ConflictReport], min_conflicts: int) -> tuple[bool, str]:
    """Valid = the five test proofs hold and at least `min_conflicts` existing features conflict (pure)."""
    reasons = proofs.reasons()
    n = sum(1 for c in conflicts if c.status == "conflict")
    if n < min_conflicts:
        unapplied = [c.feature for c in conflicts if c.status == "could_not_apply"]
        extra = f"; could not apply against features {unapplied}" if unapplied else ""
        reasons.append(f"{n} conflict(s) with existing features, at least {min_conflicts} required{extra}")
    if reasons:
        return False, "; ".join(reasons)
    ran = proofs.new_tests_ran.counts
    score = proofs.mutation_score or (0, 0)
    existing = proofs.existing_tests.counts
    return True, (f"new tests ran ({ran.get('new', ran.get('total', 0))}), pass with the feature, fail without it "
                  f"({proofs.fail_without_feature.reason or 'by count'}), kill {score[0]}/{score[1]} mutants, "
                  f"existing tests still pass ({existing.get('checked', 0)} checked, "
                  f"{existing.get('not_checkable', 0)} not checkable); conflicts with {n} feature(s)")


def pick_backend(prefer: Backend, docker_answers: bool, has_dockerfile: bool) -> Literal["docker", "local"]:
    """Docker when asked or when 'auto' finds an engine and an image recipe; else local (pure)."""
    if prefer == "docker":
        if not docker_answers:
            raise StepError("--backend docker: no Docker engine answers", hint="use --backend local")
        return "docker"
    if prefer == "auto" and docker_answers and has_dockerfile:
        return "docker"
    return "local"


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


def report_env(junit_dir: str, plugin_dir: str, pythonpath: str | None = None) -> dict[str, str]:
    """Variables that make every pytest session of a task script write its own JUnit report (pure)."""
    return {"REPO_PILOT_JUNIT_DIR": junit_dir, "PYTEST_PLUGINS": "repo_pilot_junit",
            "PYTHONPATH": plugin_dir + (f":{pythonpath}" if pythonpath else "")}
