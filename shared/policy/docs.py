"""Where Repo Pilot's generated docs may go (pure): into `docs/` only where the project keeps no
documentation of its own. Three Markdown files dropped into a Sphinx or MkDocs tree are outside
its toctree or nav and repeat what its own pages say: a maintainer deletes them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

# What the docs step writes; a tree holding these and nothing else in docs/ is Repo Pilot's to refresh.
DOC_FILES = {
    "specification": "docs/specification.md",
    "graph": "docs/graph.md",
    "architecture": "docs/architecture.md",
}

_DOC_DIRS = ("docs", "doc")
_MKDOCS = ("mkdocs.yml", "mkdocs.yaml")


def own_docs(paths: Iterable[str]) -> str | None:
    """The project's own documentation, named for a person ("Sphinx (docs/conf.py)", "MkDocs
    (mkdocs.yml)", "docs/ (12 files)"), or None when it keeps none besides Repo Pilot's files."""
    ours = set(DOC_FILES.values())
    theirs: list[str] = []
    for path in paths:
        parts = PurePosixPath(path).parts
        if path in _MKDOCS:
            return f"MkDocs ({path})"
        if len(parts) > 1 and parts[0] in _DOC_DIRS and path not in ours:
            if parts[-1] == "conf.py":
                return f"Sphinx ({path})"
            theirs.append(path)
    if theirs:
        folders = sorted({PurePosixPath(p).parts[0] for p in theirs})
        return f"{', '.join(f + '/' for f in folders)} ({len(theirs)} files)"
    return None


def docs_skipped_reason(own: str) -> str:
    return (
        f"the project keeps its own docs ({own}): Repo Pilot's specification, graph and architecture "
        "are in the run log (RepoAnalyzed), not added beside them"
    )
