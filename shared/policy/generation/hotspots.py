"""Hot spots: where a task's features crowd together (pure).

Every feature.patch is a diff against the same base commit, so hunk source ranges (context
lines included: git merges conflict on adjacent lines too) are comparable across features.
Overlapping ranges of one file are merged into one region; regions and files are ranked by
how many distinct features touch them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from shared.events.gen import HotSpot


def touched_ranges(patch: str) -> list[tuple[str, int, int]]:
    """(path, start, end) of every hunk in base-file line numbers (1-based, inclusive).

    A pure insertion into a new or empty region is reported at its insertion point.
    Raises ValueError naming the problem when `patch` is not a unified diff.
    """
    try:
        patch_set = PatchSet(patch)
    except UnidiffParseError as exc:
        raise ValueError(f"not a unified diff: {exc}") from None
    ranges = []
    for patched in patch_set:
        path = patched.path  # the a/ path, or the b/ path of a new file
        for hunk in patched:
            start = max(hunk.source_start, 1)
            end = max(start, hunk.source_start + hunk.source_length - 1)
            ranges.append((path, start, end))
    return ranges


def compute_hotspots(patches: dict[int, str]) -> list[HotSpot]:
    """Regions touched by the features, most-shared first (then by path and line).

    `patches` maps feature number to its feature.patch. A patch that does not parse is skipped:
    the caller reports it; hot spots are a hint, not a verdict.
    """
    by_path: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for number, patch in patches.items():
        try:
            ranges = touched_ranges(patch)
        except ValueError:
            continue
        for path, start, end in ranges:
            by_path[path].append((start, end, number))
    spots: list[HotSpot] = []
    for path, items in by_path.items():
        items.sort()
        cur_start, cur_end, members = items[0][0], items[0][1], {items[0][2]}
        for start, end, number in items[1:]:
            if start <= cur_end:  # overlapping hunks share at least one base line
                cur_end = max(cur_end, end)
                members.add(number)
            else:
                spots.append(HotSpot(path=path, start=cur_start, end=cur_end, features=sorted(members)))
                cur_start, cur_end, members = start, end, {number}
        spots.append(HotSpot(path=path, start=cur_start, end=cur_end, features=sorted(members)))
    spots.sort(key=lambda s: (-len(s.features), s.path, s.start))
    return spots


def rank_files(patches: dict[int, str]) -> list[tuple[str, list[int]]]:
    """Files with the features touching them, most-shared first (then by path)."""
    files: dict[str, set[int]] = defaultdict(set)
    for number, patch in patches.items():
        try:
            ranges = touched_ranges(patch)
        except ValueError:
            continue
        for path, _, _ in ranges:
            files[path].add(number)
    return sorted(((p, sorted(f)) for p, f in files.items()), key=lambda x: (-len(x[1]), x[0]))


def focus(spots: Iterable[HotSpot], feature: int | None) -> list[HotSpot]:
    """Only the spots `feature` is part of (all spots when feature is None)."""
    return [s for s in spots if feature is None or feature in s.features]
