"""Does a new feature.patch conflict with each existing one under a plain `git merge --no-ff`?

For every existing feature: two branches from the base commit, one with the existing
feature.patch applied and committed, one with the new one; the new branch is merged into the
existing one. A patch that `git apply` refuses is reported as could_not_apply, never as clean.
For a conflict, a second merge with every path set to `merge=union` tells whether a union
merge would resolve it.
"""

from __future__ import annotations

from pathlib import Path

from shared.adapters.git import GitError, git, run_git
from shared.adapters.workspace import apply_patch
from shared.events.gen import ConflictReport
from shared.policy.generation.task import Feature

_EXISTING, _NEW = "repo-pilot-existing", "repo-pilot-new"


def conflict_hunks(text: str) -> list[str]:
    """The `<<<<<<<` … `>>>>>>>` blocks of a conflicted file, each as one string (pure)."""
    hunks, current = [], None
    for line in text.splitlines():
        if line.startswith("<<<<<<<"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line.startswith(">>>>>>>"):
                hunks.append("\n".join(current))
                current = None
    return hunks


def _merging(repo: Path) -> bool:
    """True while a merge is in progress (MERGE_HEAD exists); rev-parse exits 1 when it does not."""
    proc = run_git(repo, "rev-parse", "-q", "--verify", "MERGE_HEAD")
    if proc.returncode not in (0, 1):
        raise GitError(["git", "rev-parse", "MERGE_HEAD"], proc.returncode, proc.stderr, proc.stdout)
    return proc.returncode == 0


def _abort_merge(repo: Path) -> None:
    if _merging(repo):
        git(repo, "merge", "--abort")


def _reset(repo: Path, base: str) -> None:
    _abort_merge(repo)
    git(repo, "checkout", "--quiet", "--force", "--detach", base)
    git(repo, "clean", "-fdxq")


def _branch_with(repo: Path, base: str, branch: str, patch: str, message: str) -> str | None:
    git(repo, "checkout", "--quiet", "--force", "-B", branch, base)
    error = apply_patch(repo, patch)
    if error is None:
        git(repo, "add", "--all")
        git(repo, "commit", "--quiet", "--allow-empty", "--no-verify", "-m", message)
    return error


def _unmerged(repo: Path) -> list[str]:
    return [f for f in git(repo, "diff", "--name-only", "--diff-filter=U").splitlines() if f]


def _merge(repo: Path) -> tuple[int, str, list[str]]:
    """Merge the new branch into the existing one: git's exit code, its output, the conflicted files."""
    git(repo, "checkout", "--quiet", "--force", _EXISTING)
    proc = run_git(repo, "merge", "--no-ff", "--no-edit", _NEW)
    return proc.returncode, (proc.stdout + proc.stderr).strip(), _unmerged(repo)


def _union_resolves(repo: Path) -> bool:
    attributes = Path(git(repo, "rev-parse", "--git-path", "info/attributes"))
    attributes = attributes if attributes.is_absolute() else repo / attributes
    attributes.parent.mkdir(parents=True, exist_ok=True)
    attributes.write_text("* merge=union\n")
    try:
        code, output, files = _merge(repo)
        if code == 0 and not files and not _merging(repo):
            return True
        if code == 1 and files:
            return False
        raise GitError(["git", "merge", "--no-ff", _NEW], code, output)
    finally:
        attributes.unlink(missing_ok=True)
        _abort_merge(repo)


def check_one(repo: Path, base: str, new_patch: str, feature: Feature) -> ConflictReport:
    """Merge the new feature against `feature` in `repo` (a scratch clone we may reset freely).

    git merge's exit code decides: 0 with nothing unmerged is clean, 1 with conflicted files is a
    conflict, anything else (a merge that stopped for another reason) is could_not_apply with
    git's own words."""
    _reset(repo, base)
    error = _branch_with(repo, base, _EXISTING, feature.feature_patch, f"feature{feature.number}")
    if error:
        return ConflictReport(feature=feature.number, status="could_not_apply",
                              detail=f"feature{feature.number}/feature.patch does not apply to the base: {error}")
    error = _branch_with(repo, base, _NEW, new_patch, "new feature")
    if error:
        return ConflictReport(feature=feature.number, status="could_not_apply",
                              detail=f"the new feature.patch does not apply to the base: {error}")
    code, output, files = _merge(repo)
    if code == 0 and not files and not _merging(repo):
        return ConflictReport(feature=feature.number, status="clean")
    if code != 1 or not files:
        _abort_merge(repo)
        return ConflictReport(feature=feature.number, status="could_not_apply",
                              detail=f"git merge exited {code} without a plain conflict: {output[-500:]}")
    hunks = []
    for path in files:
        target = repo / path
        text = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else ""
        hunks.extend(f"{path}\n{h}" for h in conflict_hunks(text))
    _abort_merge(repo)
    return ConflictReport(feature=feature.number, status="conflict", files=files, hunks=hunks,
                          union_resolves=_union_resolves(repo))


def check_conflicts(repo: Path, base: str, new_patch: str, features: list[Feature]) -> list[ConflictReport]:
    """One report per existing feature, in feature order. `repo` is a scratch clone at `base`."""
    reports = [check_one(repo, base, new_patch, f) for f in features]
    _reset(repo, base)
    return reports
