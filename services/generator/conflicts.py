"""Does a new feature.patch conflict with each existing one under a plain `git merge --no-ff`?

For every existing feature: two branches from the base commit, one with the existing
feature.patch applied and committed, one with the new one; the new branch is merged into the
existing one. A patch that `git apply` refuses is reported as could_not_apply, never as clean.
For a conflict, a second merge with every path set to `merge=union` tells whether a union
merge would resolve it.
"""

from __future__ import annotations

from pathlib import Path

from services.generator.task import Feature
from services.generator.workspace import apply_patch
from shared.adapters.git import git
from shared.events.gen import ConflictReport

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


def _reset(repo: Path, base: str) -> None:
    git(repo, "merge", "--abort", check=False)
    git(repo, "checkout", "--quiet", "--force", "--detach", base)
    git(repo, "clean", "-fdxq")


def _branch_with(repo: Path, base: str, branch: str, patch: str, message: str) -> str | None:
    git(repo, "checkout", "--quiet", "--force", "-B", branch, base)
    error = apply_patch(repo, patch)
    if error is None:
        git(repo, "add", "--all")
        git(repo, "commit", "--quiet", "--allow-empty", "--no-verify", "-m", message)
    return error


def _union_resolves(repo: Path) -> bool:
    attributes = Path(git(repo, "rev-parse", "--git-path", "info/attributes"))
    attributes = attributes if attributes.is_absolute() else repo / attributes
    attributes.parent.mkdir(parents=True, exist_ok=True)
    attributes.write_text("* merge=union\n")
    try:
        git(repo, "checkout", "--quiet", "--force", _EXISTING)
        git(repo, "merge", "--no-ff", "--no-edit", _NEW, check=False)
        unmerged = git(repo, "diff", "--name-only", "--diff-filter=U")
        stopped = git(repo, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False)
        return not unmerged and not stopped
    finally:
        attributes.unlink(missing_ok=True)
        git(repo, "merge", "--abort", check=False)


def check_one(repo: Path, base: str, new_patch: str, feature: Feature) -> ConflictReport:
    """Merge the new feature against `feature` in `repo` (a scratch clone we may reset freely)."""
    _reset(repo, base)
    error = _branch_with(repo, base, _EXISTING, feature.feature_patch, f"feature{feature.number}")
    if error:
        return ConflictReport(feature=feature.number, status="could_not_apply",
                              detail=f"feature{feature.number}/feature.patch does not apply to the base: {error}")
    error = _branch_with(repo, base, _NEW, new_patch, "new feature")
    if error:
        return ConflictReport(feature=feature.number, status="could_not_apply",
                              detail=f"the new feature.patch does not apply to the base: {error}")
    git(repo, "checkout", "--quiet", "--force", _EXISTING)
    out = git(repo, "merge", "--no-ff", "--no-edit", _NEW, check=False)
    files = [f for f in git(repo, "diff", "--name-only", "--diff-filter=U").splitlines() if f]
    if not files:
        if git(repo, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False):
            return ConflictReport(feature=feature.number, status="could_not_apply",
                                  detail=f"git merge stopped without conflicted files: {out[-500:]}")
        return ConflictReport(feature=feature.number, status="clean")
    hunks = []
    for path in files:
        target = repo / path
        text = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else ""
        hunks.extend(f"{path}\n{h}" for h in conflict_hunks(text))
    git(repo, "merge", "--abort", check=False)
    return ConflictReport(feature=feature.number, status="conflict", files=files, hunks=hunks,
                          union_resolves=_union_resolves(repo))


def check_conflicts(repo: Path, base: str, new_patch: str, features: list[Feature]) -> list[ConflictReport]:
    """One report per existing feature, in feature order. `repo` is a scratch clone at `base`."""
    reports = [check_one(repo, base, new_patch, f) for f in features]
    _reset(repo, base)
    return reports
