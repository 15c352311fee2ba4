"""Splitting an agent's diff into feature.patch and tests.patch by path conventions."""

import pytest

from shared.policy.generation.split import is_scratch, is_test_path, split_diff

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("path", [
    "tests/test_ops.py", "pkg/test_thing.py", "pkg/thing_test.py", "conftest.py", "src/pkg/tests/helpers.py",
    "mux_test.go", "internal/testdata/golden.json",
    "tests/integration.rs", "src/parser/tests.rs",
    "src/sum.test.ts", "src/Button.spec.jsx", "src/__tests__/util.js", "test/index.js",
])
def test_test_paths(path):
    assert is_test_path(path)


@pytest.mark.parametrize("path", [
    "calc/ops.py", "src/testing_utils_module.rs", "mux.go", "src/lib.rs", "src/sum.ts", "contest.py",
    "latest/notes.md",
])
def test_source_paths(path):
    assert not is_test_path(path)


@pytest.mark.parametrize("path", [
    "calc/__pycache__/ops.cpython-311.pyc", "node_modules/x/index.js", "target/debug/build.log",
    "feature.md", "scratch.py", "tmp_check.py", "calc/ops.py.orig", "build/lib/calc/ops.py", "repro.py",
    "pkg.egg-info/PKG-INFO",
])
def test_scratch_paths(path):
    assert is_scratch(path)


def test_docs_feature_md_is_not_scratch_below_root():
    assert not is_scratch("docs/feature.md")


def _file(path: str, new: bool = False) -> str:
    if new:
        return (f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..e69de29\n"
                f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x = 1\n")
    return (f"diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n"
            "@@ -1,2 +1,2 @@\n a\n-b\n+c\n")


def test_split_separates_source_tests_and_scratch():
    diff = _file("calc/ops.py") + _file("tests/test_ops.py") + _file("scratch.py", new=True) + \
        _file("mux_test.go", new=True)
    split = split_diff(diff)
    assert split.feature_files == ["calc/ops.py"]
    assert split.test_files == ["tests/test_ops.py", "mux_test.go"]
    assert split.dropped == ["scratch.py"]
    assert split.failure is None
    assert split.feature_patch == _file("calc/ops.py")
    assert split.tests_patch == _file("tests/test_ops.py") + _file("mux_test.go", new=True)


def test_tests_only_fails_with_reason():
    split = split_diff(_file("tests/test_ops.py"))
    assert split.failure and "no source changes" in split.failure


def test_source_only_fails_with_reason():
    split = split_diff(_file("calc/ops.py") + _file("tmp.txt", new=True))
    assert split.failure and "no test changes" in split.failure


def test_empty_diff_fails_with_reason():
    assert "changed nothing" in (split_diff("").failure or "")
