"""Security fixes from pixee's codemods, chosen for the findings at hand (one codemod, one improvement).

Which codemod removes which finding is ours (`CODEMOD_FOR`); what a codemod does and why is its
own description (from `codemodder --describe`). Every codemod may change behaviour, so `implement`
keeps one only when it removed a measured finding, added none that weighs more, and the
repository's own tests pass with it alone (see validate.py). Codemods that add a dependency to the
target are kept only when the target's environment can install it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from shared.adapters.analyzers import DEFAULT_SELECT, Finding, parse_failure_in, run_ruff, target_version
from shared.adapters.codemods import CodemodInfo, run_codemod
from shared.events import Improvement
from shared.policy.findings import severity, weighted
from shared.ports.errors import ChangeRejectedError

# finding code (ruff flake8-bandit, or bandit) -> the codemod that removes it. S311 (`random`) is not
# here: its codemod rewrites every use in a file, seeded jitter included; `fix:secure-random` fixes
# only the sites whose value feeds a secret (shared/policy/behaviour.py).
CODEMOD_FOR: dict[str, str] = {
    "S602": "pixee:python/subprocess-shell-false",
    "S604": "pixee:python/subprocess-shell-false",
    "S113": "pixee:python/add-requests-timeouts",
    "S506": "pixee:python/harden-pyyaml",
    "S301": "pixee:python/harden-pickle-load",
    "S306": "pixee:python/secure-tempfile",
    "S608": "pixee:python/sql-parameterization",
    "S501": "pixee:python/requests-verify",
    "S701": "pixee:python/enable-jinja2-autoescape",
    "S310": "pixee:python/url-sandbox",
    "S313": "pixee:python/use-defusedxml",
    "S314": "pixee:python/use-defusedxml",
    "S318": "pixee:python/use-defusedxml",
    "S320": "pixee:python/safe-lxml-parsing",
    "S502": "pixee:python/upgrade-sslcontext-tls",
    "S503": "pixee:python/upgrade-sslcontext-tls",
    "S504": "pixee:python/upgrade-sslcontext-tls",
}
# Codemods whose fix imports a package the target must then depend on.
ADDS_DEPENDENCY = {
    "pixee:python/harden-pickle-load": "fickling",
    "pixee:python/use-defusedxml": "defusedxml",
    "pixee:python/url-sandbox": "security",
}
_DESCRIPTION_CHARS = 700


def _bare(code: str) -> str:
    return "S" + code.removeprefix("bandit:B") if code.startswith("bandit:B") else code


def codemod_for(finding: Finding) -> str | None:
    return CODEMOD_FOR.get(_bare(finding.code))


def _short(description: str) -> str:
    """The codemod's description up to its example diff, trimmed."""
    text = description.split("```")[0].strip()
    text = re.sub(r"\n{2,}", "\n\n", text)
    return text if len(text) <= _DESCRIPTION_CHARS else text[:_DESCRIPTION_CHARS].rsplit(" ", 1)[0] + " …"


def codemod_improvements(findings: list[Finding], infos: dict[str, CodemodInfo]) -> list[Improvement]:
    """One improvement per codemod that removes at least one of `findings` (pure), most severe first."""
    groups: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        codemod = codemod_for(f)
        if codemod and codemod in infos:
            groups[codemod].append(f)
    ranked = sorted(groups.items(), key=lambda kv: (-max(_rank(f.code) for f in kv[1]), -len(kv[1]), kv[0]))
    out = []
    for codemod, fs in ranked:
        fs = sorted(fs)
        info = infos[codemod]
        files = sorted({f.path for f in fs})
        removes = "; ".join(sorted({f"{f.code} ({f.name or severity(f.code)})" for f in fs}))
        dependency = ADDS_DEPENDENCY.get(codemod)
        note = (f" It adds the dependency `{dependency}`: kept only if the target's environment installs it."
                if dependency else "")  # fmt: skip
        out.append(Improvement(
            id=f"security-codemod-{codemod.rsplit('/', 1)[-1]}",
            category="security",
            title=f"{info.summary} ({len(fs)} finding(s) in {files[0] if len(files) == 1 else f'{len(files)} files'})",
            rationale=(f"Finding(s) it removes: {removes}.\n\npixee codemod `{codemod}`: {_short(info.description)}"
                       f"\n\nThe fix may change behaviour: it is kept only if the repository's own tests pass with "
                       f"it alone.{note}"),
            files=files,
            changes="\n".join(f"- `{f.path}:{f.line}` {f.code}: {f.message}" for f in fs[:20]),
            rule=f"codemod:{codemod}",
        ))  # fmt: skip
    return out


def _rank(code: str) -> int:
    return {"high": 3, "medium": 2, "low": 1}.get(severity(code), 0)


def apply_codemod(
    env_dir: Path, repo: Path, improvement: Improvement, requires_python: str | None
) -> tuple[list[str], str]:
    """Run the improvement's codemod on its files in the working copy: (changed files, summary).

    Raises ChangeRejectedError when the codemod changed nothing, removed no measured finding, added
    findings that weigh more than it removed, or broke parsing.
    """
    codemod = (improvement.rule or "").removeprefix("codemod:")
    files = [f for f in improvement.files if (repo / f).is_file()]
    if not files:
        raise ChangeRejectedError(f"none of {improvement.files} exists in the working copy; no automatic fix")
    target = target_version(requires_python)
    before = run_ruff(repo, files, DEFAULT_SELECT, target)
    covered = [f for f in before if codemod_for(f) == codemod]
    if not covered:
        raise ChangeRejectedError(f"ruff no longer reports the findings {codemod} removes; nothing to fix")
    try:
        result = run_codemod(env_dir, repo, codemod, files)
    except RuntimeError as exc:
        raise ChangeRejectedError(str(exc)) from exc
    if not result.changed:
        raise ChangeRejectedError(f"{codemod} made no change to {', '.join(files)} (its detector did not match "
                                  "these calls)")  # fmt: skip
    py_changed = [f for f in result.changed if f.endswith(".py")]
    broken = [f for f in py_changed if parse_failure_in(repo / f)]
    if broken:
        raise ChangeRejectedError(f"{codemod} broke parsing of {broken}")
    after = run_ruff(repo, sorted(set(files) | set(py_changed)), DEFAULT_SELECT, target)
    left = [f for f in after if codemod_for(f) == codemod]
    removed = len(covered) - len(left)
    count = lambda fs: {c: sum(1 for f in fs if f.code == c) for c in {f.code for f in fs}}  # noqa: E731
    if removed <= 0:
        raise ChangeRejectedError(f"{codemod} changed {', '.join(result.changed)} but removed none of the "
                                  f"{len(covered)} finding(s) it targets")  # fmt: skip
    if weighted(count(after)) >= weighted(count(before)):
        added = sorted({f.code for f in after} - {f.code for f in before})
        raise ChangeRejectedError(f"{codemod} removed {removed} finding(s) but added others that weigh as much "
                                  f"({', '.join(added) or 'same rules'})")  # fmt: skip
    dependency = ADDS_DEPENDENCY.get(codemod)
    if dependency and dependency not in result.dependencies:
        raise ChangeRejectedError(f"{codemod} needs the dependency `{dependency}` but could not declare it in the "
                                  "repository's dependency files")  # fmt: skip
    summary = f"{codemod} removed {removed} of {len(covered)} finding(s) in {', '.join(result.changed)}"
    if result.descriptions:
        summary += ": " + result.descriptions[0]
    return result.changed, summary
