"""Where the docs step may write (shared.policy.docs.own_docs): only where the project keeps no
documentation of its own, or only Repo Pilot's."""

from __future__ import annotations

import pytest

from shared.policy.docs import DOC_FILES, own_docs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["setup.py", "pkg/__init__.py", "README.md"], None),
        ([*DOC_FILES.values(), "README.md"], None),  # Repo Pilot's own, from an earlier run: refreshed
        (["docs/index.rst", "docs/conf.py", "docs/usage.rst"], "Sphinx (docs/conf.py)"),
        (["doc/source/conf.py"], "Sphinx (doc/source/conf.py)"),
        (["mkdocs.yml", "docs/index.md"], "MkDocs (mkdocs.yml)"),
        (["docs/usage.md", "docs/faq.md", "docs/specification.md"], "docs/ (2 files)"),
        (["src/docs/helpers.py", "docsite.txt"], None),  # not a docs folder at the root
    ],
)
def test_own_docs(paths, expected):
    assert own_docs(paths) == expected
