"""Running the static-analysis tools (ruff, bandit) and the secrets scan, and reading their output.

Every run is `--isolated` (the repository's own config must not change what we find, or two
repositories with the same code would get different suggestions) and `--no-cache` (a cache
directory would show up as an untracked file in the working copy).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.common.budget import skip_reason
from shared.policy.paths import is_test_path

# The families the engine looks at: syntax errors and pyflakes (so signals see breakage),
# bugbear (likely bugs), the flake8-bandit security rules, and pyupgrade.
DEFAULT_SELECT: tuple[str, ...] = ("E9", "F", "B", "S", "UP")

# Test code legitimately asserts and uses throwaway credentials; flagging it is noise.
_TEST_ONLY_NOISE = {"S101", "S105", "S106", "S107", "S311", "S603", "S607"}
_TOOL_TIMEOUT = 120


@dataclass(frozen=True, order=True)
class Finding:
    """One finding of one tool at one place. `code` is e.g. `S105`, `bandit:B303`, `secret:github-token`."""

    path: str  # relative to the repository root, posix
    line: int
    code: str
    message: str
    fixable: bool = False  # the tool has a *safe* automatic fix for it
    name: str = ""  # the rule's name, e.g. `hardcoded-password-string`


def _drop_test_noise(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not (f.code in _TEST_ONLY_NOISE and is_test_path(f.path))]


def tool_command(name: str) -> list[str]:
    """The command that runs `name` from the interpreter's own environment, falling back to PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if found:
        return [found]
    return [sys.executable, "-m", name]


def target_version(requires_python: str | None) -> str:
    """Ruff's `--target-version` from a `requires-python` spec (its lower bound), else this interpreter."""
    minor = sys.version_info.minor
    if requires_python:
        match = re.search(r"3\.(\d+)", requires_python)
        if match:
            minor = int(match.group(1))
    return f"py3{min(max(minor, 7), 13)}"


def _relative(repo: Path, filename: str) -> str:
    path = Path(filename)
    if not path.is_absolute():
        path = repo / path
    try:
        return path.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        return Path(filename).as_posix()


def parse_ruff_json(repo: Path, output: str) -> list[Finding]:
    """Findings from `ruff check --output-format json` output (pure apart from path resolution)."""
    findings = []
    for item in json.loads(output or "[]"):
        fix = item.get("fix") or {}
        findings.append(
            Finding(
                path=_relative(repo, item["filename"]),
                line=int((item.get("location") or {}).get("row") or 0),
                code=item.get("code") or "E999",  # ruff reports syntax errors without a code
                message=item.get("message", ""),
                fixable=fix.get("applicability") == "safe",
                name=item.get("name") or "",
            )
        )
    return sorted(_drop_test_noise(findings))


def run_ruff(repo: Path, files: list[str], select: tuple[str, ...] | list[str], target: str) -> list[Finding]:
    """Ruff's findings for `files` (relative to `repo`) with only `select` enabled."""
    if not files:
        return []
    cmd = [
        *tool_command("ruff"), "check", "--isolated", "--no-cache", "--exit-zero",
        "--output-format", "json", "--target-version", target, "--select", ",".join(select), "--", *files,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=repo, check=False, capture_output=True, text=True, timeout=_TOOL_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"ruff failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return parse_ruff_json(repo, proc.stdout)


def ruff_fix(repo: Path, files: list[str], select: list[str], target: str) -> None:
    """Apply ruff's safe fixes for `select` to `files`; unsafe fixes are never applied."""
    cmd = [
        *tool_command("ruff"), "check", "--isolated", "--no-cache", "--exit-zero", "--fix", "--no-unsafe-fixes",
        "--quiet", "--target-version", target, "--select", ",".join(select), "--", *files,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=repo, check=False, capture_output=True, text=True, timeout=_TOOL_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"ruff --fix failed ({proc.returncode}): {proc.stderr.strip()[:500]}")


def parse_bandit_json(repo: Path, output: str) -> list[Finding]:
    """Bandit's medium- and high-severity findings (its low ones are mostly 'this import exists')."""
    data = json.loads(output or "{}")
    findings = []
    for item in data.get("results", []):
        if item.get("issue_severity") not in ("MEDIUM", "HIGH"):
            continue
        findings.append(
            Finding(
                path=_relative(repo, item["filename"]),
                line=int(item.get("line_number") or 0),
                code=f"bandit:{item['test_id']}",
                message=_redact(item["test_id"], item.get("issue_text", "")),
                name=item.get("test_name", ""),
            )
        )
    return sorted(_drop_test_noise(findings))


def _redact(test_id: str, text: str) -> str:
    """Bandit quotes the hard-coded password itself; suggestions are events anyone can read."""
    return re.sub(r"'[^']*'", "'***'", text) if test_id in ("B105", "B106", "B107") else text


def run_bandit(repo: Path, files: list[str]) -> list[Finding]:
    if not files:
        return []
    cmd = [*tool_command("bandit"), "-f", "json", "-q", "--", *files]
    proc = subprocess.run(cmd, cwd=repo, check=False, capture_output=True, text=True, timeout=_TOOL_TIMEOUT)
    if proc.returncode not in (0, 1):  # 1 means "found issues"
        raise RuntimeError(f"bandit failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return parse_bandit_json(repo, proc.stdout)


def bandit_only(bandit: list[Finding], ruff: list[Finding]) -> list[Finding]:
    """Bandit findings ruff did not already report at the same place (bandit B105 is ruff S105)."""
    seen = {(f.path, f.line, f.code[1:]) for f in ruff if f.code.startswith("S")}
    return [f for f in bandit if (f.path, f.line, f.code.removeprefix("bandit:B")) not in seen]


# Formats with a recognisable shape; generic "password = ..." is ruff's S105 job.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "aws-access-key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github-token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "slack-token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "openai-key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}\b"),
    "google-api-key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "stripe-live-key": re.compile(r"\b[rs]k_live_[0-9A-Za-z]{24,}\b"),
    "private-key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
}


def scan_secrets_text(path: str, text: str) -> list[Finding]:
    """Committed credentials in one file's text (pure)."""
    findings = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in SECRET_PATTERNS.items():
            if pattern.search(line):
                findings.append(
                    Finding(path, lineno, f"secret:{kind}", f"looks like a committed {kind}", name=kind)
                )
    return findings


def scan_secrets(repo: Path, files: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    for rel in files:
        path = repo / rel
        if skip_reason(path):
            continue  # over budget, binary or unreadable: not a text secret we can scan
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # binary or unreadable: not a text secret
        findings.extend(scan_secrets_text(rel, text))
    return sorted(findings)
