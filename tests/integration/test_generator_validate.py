"""`repo-pilot generate --validate` on the fixture task: real git merges, real pytest runs."""

import json

import pytest
import typer
from typer.testing import CliRunner

from shared.app.generate import generate
from shared.policy.generation.hotspots import compute_hotspots
from tests.support.task_fixture import BASE_OPS, NOT_APPLYING_PATCH, make_task, pair

pytestmark = pytest.mark.integration

app = typer.Typer()
app.command("generate")(generate)
app.command("noop")(lambda: None)  # two commands, so `generate` is a subcommand as in repo-pilot


@pytest.fixture
def task(tmp_path):
    return make_task(tmp_path / "fixture")


def _validate(task, tmp_path, feature_patch: str, tests_patch: str, *extra: str):
    (tmp_path / "feature.patch").write_text(feature_patch)
    (tmp_path / "tests.patch").write_text(tests_patch)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", "--task", str(task.path), "--backend", "local",
                                      "--output", str(out), "--validate", str(tmp_path / "feature.patch"),
                                      str(tmp_path / "tests.patch"), *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads((out / "result.json").read_text()), result.output


def test_two_conflicts_and_passing_tests_is_valid(task, tmp_path):
    code, result, output = _validate(task, tmp_path, *pair(task, "two_conflicts"))
    assert code == 0, output
    assert result["valid"] is True
    assert result["tests"]["passed"] is True
    assert result["tests"]["counts"]["passed"] == 5 and result["tests"]["counts"]["failed"] == 0
    assert result["conflicting_features"] == [2, 3]
    by_feature = {c["feature"]: c for c in result["conflicts"]}
    assert by_feature[1]["status"] == "clean"
    for n in (2, 3):
        assert by_feature[n]["files"] == ["calc/ops.py"]
        assert by_feature[n]["hunks"] and all(h.startswith("calc/ops.py\n<<<<<<<") for h in by_feature[n]["hunks"])
        assert by_feature[n]["union_resolves"] is True
    assert "multiply" in "".join(by_feature[2]["hunks"]) and "divide" in "".join(by_feature[3]["hunks"])


def test_min_conflicts_above_what_is_there_makes_it_invalid(task, tmp_path):
    code, result, _ = _validate(task, tmp_path, *pair(task, "two_conflicts"), "--min-conflicts", "3")
    assert code == 1
    assert result["valid"] is False and "2 conflict(s)" in result["reason"]


def test_clean_everywhere_is_invalid_for_no_conflicts(task, tmp_path):
    code, result, _ = _validate(task, tmp_path, *pair(task, "clean"))
    assert code == 1
    assert result["valid"] is False
    assert result["tests"]["passed"] is True
    assert [c["status"] for c in result["conflicts"]] == ["clean", "clean", "clean"]
    assert "0 conflict(s)" in result["reason"]


def test_breaking_the_tests_is_invalid_with_the_counts(task, tmp_path):
    code, result, _ = _validate(task, tmp_path, *pair(task, "breaks_tests"))
    assert code == 1
    assert result["valid"] is False
    assert result["tests"]["passed"] is False
    assert (result["tests"]["counts"]["passed"], result["tests"]["counts"]["failed"]) == (4, 1)
    assert "4 passed, 1 failed" in result["reason"]
    assert result["conflicting_features"] == [2, 3]  # it does conflict; the tests decide


def test_a_patch_that_does_not_apply_is_could_not_apply_never_clean(task, tmp_path):
    _, tests_patch = pair(task, "two_conflicts")
    code, result, _ = _validate(task, tmp_path, NOT_APPLYING_PATCH, tests_patch)
    assert code == 1
    assert [c["status"] for c in result["conflicts"]] == ["could_not_apply"] * 3
    assert all("does not apply" in c["detail"] for c in result["conflicts"])
    assert result["valid"] is False


def test_patch_files_validate_through_the_cli(task, tmp_path):
    code, result, _ = _validate(task, tmp_path, *pair(task, "two_conflicts"))
    assert code == 0 and result["valid"]
    assert [c["feature"] for c in result["conflicts"] if c["status"] == "conflict"] == [2, 3]
    assert result["tests"]["counts"]["passed"] == 5


def test_hot_spots_across_the_fixture_features(task):
    spots = compute_hotspots({f.number: f.feature_patch for f in task.features})
    assert [(s.path, s.features) for s in spots] == [("calc/ops.py", [1, 2]), ("calc/ops.py", [2]),
                                                     ("calc/ops.py", [3])]
    lines = BASE_OPS.splitlines()
    for spot, name in zip(spots, ("def add", "def multiply", "def divide"), strict=True):
        line = next(i for i, text in enumerate(lines, 1) if text.startswith(name))
        assert spot.start <= line <= spot.end, (name, spot)
    assert spots[0].end < spots[1].start < spots[1].end < spots[2].start
