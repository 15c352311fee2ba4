"""A task directory laid out as CooperBench does: its model and the parsing of its scripts (pure;
`shared.adapters.task_dir.load_task` reads one from disk).

    task<id>/setup.sh        REPO_NAME, BASE_COMMIT and the `git clone <url>` of the base repository
    task<id>/runner.sh       container entry point: runner.sh <tests.patch> [feature.patch]
    task<id>/run_tests.sh    the same on a local checkout: run_tests.sh <repo> <tests.patch> [feature.patch]
    task<id>/Dockerfile      the task image
    task<id>/feature<N>/     feature.md, feature.patch (source), tests.patch (tests)
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from shared.ports.errors import StepError


@dataclass(frozen=True)
class Feature:
    number: int
    path: Path
    feature_md: str
    feature_patch: str
    tests_patch: str

    @property
    def title(self) -> str:
        return feature_title(self.feature_md)


@dataclass(frozen=True)
class Task:
    path: Path
    repo_url: str | None
    base_commit: str | None
    runner_sh: str
    run_tests_sh: Path | None
    dockerfile: Path | None
    features: list[Feature] = field(default_factory=list)

    @property
    def name(self) -> str:
        """`<repo>_task/task<id>` style name, used for image tags and output folders."""
        return f"{self.path.parent.name}-{self.path.name}"

    @property
    def test_command(self) -> str:
        return test_command_from_runner(self.runner_sh)

    def feature(self, number: int) -> Feature:
        for f in self.features:
            if f.number == number:
                return f
        raise StepError(f"task {self.path} has no feature{number}",
                        hint=f"features: {', '.join(str(f.number) for f in self.features) or 'none'}")


_ASSIGN = re.compile(r"""^\s*(?:export\s+)?(\w+)=(?:"([^"]*)"|'([^']*)'|(\S*))""", re.MULTILINE)
_CLONE_VALUE_OPTIONS = {"--depth", "--branch", "-b", "--origin", "-o", "--filter", "--reference", "-c", "--config",
                        "--jobs", "-j", "--shallow-since", "--shallow-exclude", "--template", "--separate-git-dir",
                        "--upload-pack", "-u", "--server-option"}
_TEST_COMMAND = re.compile(
    r"\b(pytest|py\.test|go test|cargo test|jest|vitest|npm (?:run )?test|yarn test|pnpm test|npx \w+)\b"
)


def parse_setup_sh(text: str) -> tuple[str | None, str | None]:
    """(repository URL, base commit) from a setup.sh; either may be None when it isn't there."""
    values = {m.group(1): m.group(2) or m.group(3) or m.group(4) or "" for m in _ASSIGN.finditer(text)}
    base = values.get("BASE_COMMIT") or None
    url = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or "git clone" not in stripped:
            continue
        try:
            words = shlex.split(stripped.split("git clone", 1)[1])
        except ValueError:
            continue
        positional, skip = [], False
        for word in words:
            if skip:
                skip = False
            elif word in _CLONE_VALUE_OPTIONS:
                skip = True  # the option's value is the next word, not the URL
            elif not word.startswith("-"):
                positional.append(word)
        if positional:
            url = positional[0]
            for name, value in values.items():  # `git clone "$REPO_URL" ...`
                url = url.replace(f"${{{name}}}", value).replace(f"${name}", value)
            break
    if url is None:
        url = values.get("REPO_URL") or values.get("REPO") or None
    return url, base


def test_command_from_runner(runner_sh: str) -> str:
    """The lines of runner.sh that run tests (pytest, go test, cargo test, jest, ...), joined."""
    found = []
    for line in runner_sh.splitlines():
        stripped = line.strip()
        if stripped.startswith(("#", "echo")) or "install" in stripped:
            continue
        if _TEST_COMMAND.search(stripped):
            found.append(stripped)
    return "\n".join(found)


def feature_title(feature_md: str) -> str:
    """The `**Title**:` of a feature.md, else its first non-empty line."""
    for line in feature_md.splitlines():
        m = re.match(r"\s*\**\s*Title\s*\**\s*:\s*\**\s*(.+)", line, re.IGNORECASE)
        if m:
            return m.group(1).strip()
    return next((line.strip("# ").strip() for line in feature_md.splitlines() if line.strip()), "")
