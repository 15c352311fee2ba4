"""Running pixee's codemodder (from the isolated tools env) on a working copy and reading its CodeTF."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from shared.adapters.tools_env import tool_env_vars

CODEMOD_TIMEOUT = 600.0


@dataclass(frozen=True)
class CodemodInfo:
    id: str
    summary: str
    description: str


@dataclass
class CodemodResult:
    codemod: str
    changed: list[str] = field(default_factory=list)  # files, relative to the repository
    descriptions: list[str] = field(default_factory=list)  # codemodder's per-change descriptions
    failures: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)  # packages the codemod added


def describe(env_dir: Path) -> dict[str, CodemodInfo]:
    """Every codemod's own summary and description, by id (cached in the tools env)."""
    cache = env_dir / "describe.json"
    if not cache.is_file():
        proc = subprocess.run([str(env_dir / "bin" / "codemodder"), "--describe"], capture_output=True,
                              text=True, timeout=120, env=tool_env_vars(env_dir), check=False)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"codemodder --describe failed: {proc.stderr.strip()[-500:]}")
        cache.write_text(proc.stdout)
    results = json.loads(cache.read_text()).get("results", [])
    return {
        r["codemod"]: CodemodInfo(r["codemod"], r.get("summary", ""), r.get("description", ""))
        for r in results
    }


def parse_codetf(data: dict) -> list[CodemodResult]:
    """Changed files, change descriptions, failures and added dependencies per codemod (pure)."""
    out = []
    for result in data.get("results", []):
        r = CodemodResult(codemod=result.get("codemod", ""))
        for changeset in result.get("changeset", []):
            r.changed.append(changeset["path"])
            for change in changeset.get("changes", []):
                if change.get("description"):
                    r.descriptions.append(change["description"])
                for pkg in change.get("packageActions", []) or []:
                    if pkg.get("result") == "completed" and pkg.get("package"):
                        r.dependencies.append(pkg["package"])
        for failure in result.get("failedFiles", []) or []:
            r.failures.append(failure if isinstance(failure, str) else json.dumps(failure))
        out.append(r)
    return out


def run_codemod(env_dir: Path, repo: Path, codemod: str, files: list[str]) -> CodemodResult:
    """Apply one codemod to `files` (relative paths) of the working copy at `repo`, in place."""
    with tempfile.TemporaryDirectory(prefix="repo-pilot-codetf-") as tmp:
        out = Path(tmp) / "result.codetf"
        cmd = [str(env_dir / "bin" / "codemodder"), str(repo), f"--codemod-include={codemod}",
               f"--path-include={','.join(files)}", "--output", str(out), "--max-workers", "1"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CODEMOD_TIMEOUT, cwd=tmp,
                              env=tool_env_vars(env_dir), check=False)  # fmt: skip
        if proc.returncode != 0 or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip()[-600:]
            raise RuntimeError(f"codemodder {codemod} failed (exit {proc.returncode}): {tail}")
        results = parse_codetf(json.loads(out.read_text()))
    merged = CodemodResult(codemod=codemod)
    for r in results:
        merged.changed += r.changed
        merged.descriptions += r.descriptions
        merged.failures += r.failures
        merged.dependencies += r.dependencies
    merged.changed = sorted(set(merged.changed))
    return merged
