"""Search/replace edit blocks: path safety, matching levels, per-block failures, parse check."""

from __future__ import annotations

import os

import pytest

from shared.policy.edits import Edit, UnsafePath, apply_edits, replace_once, resolve_inside

pytestmark = pytest.mark.unit


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    return root


# -- resolve_inside ------------------------------------------------------------------------

def test_resolves_a_plain_relative_path(repo):
    assert resolve_inside(repo, "pkg/mod.py") == (repo / "pkg" / "mod.py").resolve()
    assert resolve_inside(repo, "./new/file.txt") == (repo / "new" / "file.txt").resolve()


@pytest.mark.parametrize("rel, why", [
    ("", "empty"),
    ("   ", "empty"),
    ("a\x00b", "NUL"),
    ("/etc/passwd", "absolute"),
    ("C:/Windows/x", "absolute"),
    ("../outside.txt", "'..'"),
    ("pkg/../../outside.txt", "'..'"),
    ("pkg/../mod.py", "'..'"),
    ("..\\outside.txt", "'..'"),
    (".git/config", ".git"),
    (".git/hooks/pre-commit", ".git"),
    ("sub/.git/x", ".git"),
    (".GIT/config", ".git"),
    (".", "repository root"),
])
def test_rejects_unsafe_paths(repo, rel, why):
    with pytest.raises(UnsafePath, match=why):
        resolve_inside(repo, rel)


def test_unsafe_path_is_a_value_error():
    assert issubclass(UnsafePath, ValueError)


def test_rejects_symlinked_file_pointing_outside(repo, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, repo / "link.txt")
    with pytest.raises(UnsafePath, match="outside the repository"):
        resolve_inside(repo, "link.txt")


def test_rejects_symlinked_directory_pointing_outside(repo, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", repo / "linkdir")
    with pytest.raises(UnsafePath, match="outside the repository"):
        resolve_inside(repo, "linkdir/new.py")


def test_rejects_dangling_symlink_pointing_outside(repo, tmp_path):
    os.symlink(tmp_path / "not-yet", repo / "dangling")
    with pytest.raises(UnsafePath, match="outside the repository"):
        resolve_inside(repo, "dangling")


def test_rejects_symlink_into_dot_git(repo):
    os.symlink(repo / ".git", repo / "sneaky")
    with pytest.raises(UnsafePath, match=r"inside \.git"):
        resolve_inside(repo, "sneaky/config")


def test_allows_symlink_that_stays_inside(repo):
    os.symlink(repo / "pkg", repo / "alias")
    assert resolve_inside(repo, "alias/mod.py") == (repo / "pkg" / "mod.py").resolve()


# -- replace_once --------------------------------------------------------------------------

def test_exact_match():
    assert replace_once("a\nb\nc\n", "b\n", "B\n") == "a\nB\nc\n"


def test_trailing_whitespace_and_blank_lines_tolerated():
    content = "x = 1   \n\n\ny = 2\nz = 3\n"
    assert replace_once(content, "x = 1\ny = 2\n", "x = 10\ny = 20\n") == "x = 10\ny = 20\nz = 3\n"


def test_indentation_difference_is_tolerated_and_replacement_reindented():
    content = "class A:\n    def f(self):\n        return 1\n"
    out = replace_once(content, "def f(self):\n    return 1\n", "def f(self):\n    if self:\n        return 2\n")
    assert out == "class A:\n    def f(self):\n        if self:\n            return 2\n"


def test_ambiguous_match_fails():
    with pytest.raises(Exception, match="matches 2 places"):
        replace_once("a\na\n", "a\n", "b\n")


def test_ambiguous_tolerant_match_fails():
    with pytest.raises(Exception, match="matches 2 places"):
        replace_once("  a\nb\n  a\n", "a\n", "c\n")


def test_missing_search_fails_with_advice():
    with pytest.raises(Exception, match="not found"):
        replace_once("a\n", "zzz\n", "b\n")


def test_empty_search_appends_with_newline():
    assert replace_once("a", "", "b\n") == "a\nb\n"
    assert replace_once("", "", "new\n") == "new\n"


def test_crlf_file_keeps_its_line_endings():
    assert replace_once("a\r\nb\r\n", "a\nb\n", "A\nB\n") == "A\r\nB\r\n"


# -- apply_edits ---------------------------------------------------------------------------

def test_applies_multiple_blocks_and_creates_files(repo):
    result = apply_edits(repo, [
        Edit(path="pkg/mod.py", search="    return 1\n", replace="    return 10\n"),
        Edit(path="pkg/mod.py", search="    return 2", replace="    return 20"),
        Edit(path="docs/new.md", search="", replace="# New\n"),
    ])
    assert result.ok and result.applied == ["pkg/mod.py", "docs/new.md"]
    assert "return 10" in (repo / "pkg/mod.py").read_text()
    assert "return 20" in (repo / "pkg/mod.py").read_text()
    assert (repo / "docs/new.md").read_text() == "# New\n"


def test_failures_are_per_block(repo):
    good = Edit(path="pkg/mod.py", search="return 1", replace="return 11")
    bad = Edit(path="pkg/mod.py", search="return 99", replace="return 0")
    result = apply_edits(repo, [good, bad])
    assert result.applied == ["pkg/mod.py"]
    assert [f.edit for f in result.failed] == [bad]
    assert "not found" in result.failed[0].error and "pkg/mod.py" in result.failed[0].error
    assert "return 11" in (repo / "pkg/mod.py").read_text()


def test_search_in_missing_file_fails(repo):
    result = apply_edits(repo, [Edit(path="nope.py", search="x", replace="y")])
    assert result.applied == [] and "does not exist" in result.failed[0].error
    assert not (repo / "nope.py").exists()


def test_python_file_that_stops_parsing_is_rolled_back(repo):
    before = (repo / "pkg/mod.py").read_text()
    edits = [
        Edit(path="pkg/mod.py", search="return 1", replace="return 5"),
        Edit(path="pkg/mod.py", search="def g():", replace="def g(:"),
    ]
    result = apply_edits(repo, edits)
    assert result.applied == []
    assert [f.edit for f in result.failed] == edits
    assert all("no longer parse" in f.error for f in result.failed)
    assert (repo / "pkg/mod.py").read_text() == before


def test_new_python_file_must_parse(repo):
    result = apply_edits(repo, [Edit(path="pkg/broken.py", search="", replace="def (:\n")])
    assert result.failed and not (repo / "pkg/broken.py").exists()


def test_python_file_already_broken_is_not_blamed_on_the_edit(repo):
    (repo / "tpl.py").write_text("{{ template }}\nx = 1\n")
    result = apply_edits(repo, [Edit(path="tpl.py", search="x = 1", replace="x = 2")])
    assert result.ok and "x = 2" in (repo / "tpl.py").read_text()


def test_unsafe_path_anywhere_changes_nothing(repo):
    before = (repo / "pkg/mod.py").read_text()
    with pytest.raises(UnsafePath, match="'..'"):
        apply_edits(repo, [
            Edit(path="pkg/mod.py", search="return 1", replace="return 3"),
            Edit(path="../escape.txt", search="", replace="x"),
        ])
    assert (repo / "pkg/mod.py").read_text() == before
    assert not (repo.parent / "escape.txt").exists()


def test_binary_file_is_reported(repo):
    (repo / "blob.bin").write_bytes(b"\xff\xfe\x00")
    result = apply_edits(repo, [Edit(path="blob.bin", search="x", replace="y")])
    assert "not a UTF-8 text file" in result.failed[0].error


def test_replacement_already_in_the_files_indentation_is_not_shifted_by_the_search_texts_error():
    content = "class A:\n    def f(self):\n        return 1\n"
    # The search text lost the class's indentation; the replacement kept it (it is correct).
    out = replace_once(content, "def f(self):\n    return 1\n", "    def f(self):\n        return 2\n")
    assert out == "class A:\n    def f(self):\n        return 2\n"


def test_search_text_indented_too_deep_with_a_correct_replacement_is_not_dedented_further():
    content = "def f():\n    x = 1\n    return x\n"
    out = replace_once(content, "        x = 1\n        return x\n", "    x = 2\n    return x\n")
    assert out == "def f():\n    x = 2\n    return x\n"
