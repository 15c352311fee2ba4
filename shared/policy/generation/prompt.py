"""The agent's instructions: hot spots to collide with, the test command, the feature.md format."""

from __future__ import annotations

from shared.events.gen import FeaturePromptBuilt, HotSpot
from shared.policy.generation.hotspots import compute_hotspots, focus, rank_files
from shared.policy.generation.task import Task

SYSTEM = """PURPOSE: generate-feature
You are a software engineer extending a benchmark of coding tasks. You work in a git checkout of
a repository through the `bash` tool (each call runs one shell command in the repository root and
returns its output). When the feature and its tests are done and the tests pass, call `submit`
with the feature description. Do not commit, do not create scratch files outside the repository's
own layout, and do not touch files under .git."""

MAX_SPOTS = 12
MAX_EXAMPLE_CHARS = 2500


def _format_spots(spots: list[HotSpot]) -> str:
    return "\n".join(
        f"- {s.path} lines {s.start}-{s.end}: touched by feature(s) {', '.join(map(str, s.features))}"
        for s in spots[:MAX_SPOTS]) or "- (no overlapping regions found)"


def build_prompt(task: Task, feature: int | None = None) -> FeaturePromptBuilt:
    """The prompt for one attempt, with the hot spots it was built from (optionally focused on one feature)."""
    patches = {f.number: f.feature_patch for f in task.features}
    spots = compute_hotspots(patches)
    targets = focus(spots, feature) if feature is not None else spots
    if feature is not None:
        task.feature(feature)  # a clear error for a feature that isn't there
    files = rank_files(patches)
    test_files = sorted({line[6:].strip() for f in task.features for line in f.tests_patch.splitlines()
                         if line.startswith("+++ b/")})
    existing = "\n".join(f"- feature{f.number}: {f.title}" for f in task.features)
    example = task.features[0].feature_md[:MAX_EXAMPLE_CHARS]
    command = task.test_command or "(see run_tests.sh)"
    focus_line = (f"Focus on the regions feature{feature} changes.\n" if feature is not None else "")
    prompt = f"""Implement ONE new feature in this repository that deliberately collides with the task's
existing features: your source changes must modify the same regions they modify, so that a plain
`git merge` of your change with theirs conflicts.

Existing features (do not duplicate any of them):
{existing}

Hot spots (file and base line range, ranked by how many features change them):
{_format_spots(targets)}

Files changed by the features, most shared first:
{chr(10).join(f"- {p}: features {', '.join(map(str, n))}" for p, n in files[:MAX_SPOTS])}

{focus_line}Requirements:
1. Change the source code inside those hot-spot line ranges (edit the same lines, not just nearby).
2. Add tests for your feature to the test files the task already uses: {', '.join(test_files) or 'the existing test files'}.
3. Run the tests and make sure they all pass. The task runs them with:
{command}
4. Keep the existing behaviour working; the repository's existing tests must still pass.
5. When done, call `submit` with `feature_md`: a description in exactly this format (an existing
feature's description follows as an example):

{example}
"""
    return FeaturePromptBuilt(prompt=prompt, hotspots=targets, test_command=task.test_command)
