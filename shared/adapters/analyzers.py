"""Running the static-analysis tools (ruff, bandit) and the secrets scan, and reading their output.

Runs are `--isolated` (the repository's own config must not change what we *measure*, or two
repositories with the same code would get different signals), except the lint pass that proposes
fixes, which respects the repository's own ruff configuration (`respect_config=True`: what the
maintainers ignore is not ours to "fix"); always `--no-cache` (a cache directory would show up as
an untracked file in the working copy).
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
# bugbear (likely bugs), the flake8-bandit security rules, and the lint and modernisation families
# the rules engine fixes (engines/rules/lint.py), so every fix is measured.
DEFAULT_SELECT: tuple[str, ...] = ("E9", "E7", "F", "B", "S", "UP", "SIM", "C4", "PIE")

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
    unsafe_fix: bool = False  # the tool has a fix that may change behaviour (ruff's "unsafe")


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
                unsafe_fix=fix.get("applicability") == "unsafe",
            )
        )
    return sorted(_drop_test_noise(findings))


RUFF_CONFIG_FILES = ("ruff.toml", ".ruff.toml")


def ruff_config(repo: Path) -> dict | None:
    """The repository's own ruff configuration (its `[tool.ruff]` table or ruff.toml), or None."""
    import tomllib

    for name in RUFF_CONFIG_FILES:
        if (repo / name).is_file():
            try:
                return tomllib.loads((repo / name).read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                return None
    if (repo / "pyproject.toml").is_file():
        try:
            data = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return None
        return (data.get("tool") or {}).get("ruff")
    return None


def _ruff_scope(repo: Path, select, target: str, respect_config: bool) -> list[str]:
    """Options choosing rules and configuration. With `respect_config` and a repository ruff config,
    our `select` extends the project's configuration: its ignores (re-applied, since a command-line
    selection would re-enable them), per-file ignores, excludes, line length, quote style and target
    version apply; otherwise `--isolated`."""
    config = ruff_config(repo) if respect_config else None
    if config is None:
        return ["--isolated", "--target-version", target, "--select", ",".join(select)]
    lint = config.get("lint") or {}
    ignore = [
        code
        for table in (config, lint)
        for key in ("ignore", "extend-ignore")
        for code in table.get(key) or []
    ]
    opts = ["--force-exclude", "--select", ",".join(select)]
    if ignore:  # a command-line --select replaces the config's selection, ignores included
        opts += ["--extend-ignore", ",".join(ignore)]
    if not config.get("target-version"):
        opts += ["--target-version", target]
    return opts


def ruff_checked_files(repo: Path, files: list[str]) -> list[str]:
    """The `files` the repository's own ruff configuration checks: its `include`, `exclude` and
    `extend-exclude` decide (ruff checks a file named on its command line even when `include`
    leaves it out, so ask ruff which files it discovers itself). Without a ruff config: all."""
    if not files or ruff_config(repo) is None:
        return list(files)
    proc = subprocess.run([*tool_command("ruff"), "check", "--no-cache", "--show-files", "."], cwd=repo,
                          check=False, capture_output=True, text=True, timeout=_TOOL_TIMEOUT)  # fmt: skip
    if proc.returncode != 0:  # a config ruff cannot read: it would refuse the check as well
        raise RuntimeError(f"ruff could not read the repository's configuration: {proc.stderr.strip()[:300]}")
    seen = {_relative(repo, line.strip()) for line in proc.stdout.splitlines() if line.strip()}
    return [f for f in files if f in seen]


def run_ruff(
    repo: Path,
    files: list[str],
    select: tuple[str, ...] | list[str],
    target: str,
    respect_config: bool = False,
) -> list[Finding]:
    """Ruff's findings for `files` (relative to `repo`) with only `select` enabled. With
    `respect_config`, only the files the repository's own configuration includes are checked."""
    if respect_config:
        files = ruff_checked_files(repo, files)
    if not files:
        return []
    cmd = [
        *tool_command("ruff"), "check", "--no-cache", "--exit-zero", "--output-format", "json",
        *_ruff_scope(repo, select, target, respect_config), "--", *files,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=repo, check=False, capture_output=True, text=True, timeout=_TOOL_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"ruff failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return parse_ruff_json(repo, proc.stdout)


def ruff_fix(
    repo: Path,
    files: list[str],
    select: list[str],
    target: str,
    *,
    unsafe: bool = False,
    respect_config: bool = False,
) -> None:
    """Apply ruff's safe fixes for `select` to `files`; its unsafe ones too only when `unsafe`
    (the caller then validates the change against the repository's own tests)."""
    if respect_config:
        files = ruff_checked_files(repo, files)
    if not files:
        return
    cmd = [
        *tool_command("ruff"), "check", "--no-cache", "--exit-zero", "--fix",
        "--unsafe-fixes" if unsafe else "--no-unsafe-fixes", "--quiet",
        *_ruff_scope(repo, select, target, respect_config), "--", *files,
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


def parse_failure_in(path: Path) -> str | None:
    """Why the Python file at `path` does not parse, or None when it does."""
    import ast

    from shared.common.pyparse import PARSE_LOCK

    try:
        with PARSE_LOCK:
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
        return f"{path.name}: {exc}"
    return None
