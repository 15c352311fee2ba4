"""Valid means proven, on the fixture task with real git, real pytest and real `uv`:
each refusal has its own reason, a uv-based run_tests.sh installs from a local index through the
local sandbox, and the user's global git setup changes no verdict."""

import json
import os
import subprocess

import pytest

from shared.engines.generator import validate
from shared.engines.generator.attempt import GenerateOptions, validation_only
from shared.ports.errors import StepError
from tests.support.package_index import LocalIndex
from tests.support.task_fixture import UV_RUN_TESTS_SH, make_task, pair

pytestmark = pytest.mark.integration


@pytest.fixture
def task(tmp_path):
    return make_task(tmp_path / "fixture")


def _validate(task, name: str, folder=None, **options):
    feature_patch, tests_patch = pair(task, name)
    return validation_only(task, GenerateOptions(backend="local", **options), feature_patch, tests_patch,
                           folder=folder)


def test_valid_pair_has_every_proof_with_counts_from_junit(task, tmp_path):
    result = _validate(task, "two_conflicts", tmp_path / "out")
    assert result.valid, result.reason
    written = json.loads((tmp_path / "out" / "result.json").read_text())
    ran = written["new_tests_ran"]
    assert ran["ok"] and ran["counts"]["total"] == 5 and ran["counts"]["new"] == 1  # the 4 old tests are not new
    assert ran["detail"] == [{"new_test": "tests/test_ops.py::test_checked"}]
    assert written["tests"]["source"] == "junit"
    assert written["pass_with_feature"]["ok"]
    without = written["fail_without_feature"]
    assert without["ok"] and without["counts"]["new_passed"] == 0 and without["reason"] == "failed by assertion"
    assert written["kills_mutants"]["ok"] and written["kills_mutants"]["counts"] == {"killed": 4, "total": 4}
    existing = written["existing_tests"]
    assert existing["ok"] and existing["counts"] == {"compared": 4, "checked": 2, "broken": 0, "not_checkable": 2}
    by_what = {d["what"]: d for d in existing["detail"]}
    assert by_what["the base's own tests"]["status"] == "ok" and by_what["the base's own tests"]["after"]["passed"] == 4
    assert by_what["feature 1"]["status"] == "ok" and by_what["feature 1"]["after"]["passed"] == 5
    for n in (2, 3):  # they conflict with the candidate: no run can put both in one tree
        assert by_what[f"feature {n}"]["status"] == "not checkable"
        assert by_what[f"feature {n}"]["reason"].startswith("it and the candidate do not apply together")


def test_a_test_run_that_counts_nothing_is_invalid(task):
    task.run_tests_sh.write_text("#!/bin/bash\nexit 0\n")
    result = _validate(task, "two_conflicts")
    assert not result.valid
    assert result.tests.exit_code == 0 and result.tests.counts.total == 0 and result.tests.source == "none"
    assert not result.proofs.new_tests_ran.ok
    assert result.reason.startswith("new tests ran: the new tests did not run: no test was counted")
    assert not result.proofs.existing_tests.ran  # nothing further is run on an empty run


def test_tests_that_pass_without_the_feature_are_invalid(task):
    result = _validate(task, "tests_pass_without")
    assert not result.valid
    assert result.proofs.new_tests_ran.ok and result.proofs.pass_with_feature.ok
    proof = result.proofs.fail_without_feature
    assert not proof.ok and proof.counts["new_passed"] == proof.counts["new"] == 1 and proof.counts["failed"] == 0
    assert result.reason.startswith("fail without feature: the new tests pass without the feature")
    assert "do not test it" in result.reason
    assert not result.proofs.kills_mutants.ran and not result.proofs.existing_tests.ran  # stopped at the failure
    assert result.conflicting_features == [2, 3]  # it conflicts; the proof decides


def test_a_feature_that_breaks_existing_features_tests_is_invalid(task):
    result = _validate(task, "breaks_existing")
    assert not result.valid
    proofs = result.proofs
    assert proofs.new_tests_ran.ok and proofs.pass_with_feature.ok and proofs.fail_without_feature.ok
    assert proofs.kills_mutants.ok
    assert not proofs.existing_tests.ok
    assert proofs.existing_tests.counts == {"compared": 4, "checked": 2, "broken": 2, "not_checkable": 2}
    by_what = {d["what"]: d for d in proofs.existing_tests.detail}
    for what in ("the base's own tests", "feature 1"):
        assert by_what[what]["status"] == "broken"
        assert by_what[what]["broken"] == ["tests/test_ops.py::test_subtract"]
    assert "existing tests: the feature breaks existing tests" in result.reason and "test_subtract" in result.reason


def test_uv_task_installs_from_a_local_index_through_the_sandbox(tmp_path, monkeypatch):
    task = make_task(tmp_path / "fixture", run_tests=UV_RUN_TESTS_SH)
    with LocalIndex.of_installed(tmp_path / "index", ["pytest"]) as index:
        monkeypatch.setenv("UV_INDEX_URL", index.url)
        monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-reach-the-task")
        monkeypatch.delenv("UV_CACHE_DIR", raising=False)
        monkeypatch.setenv("PATH", "/usr/bin:/bin")  # uv comes from the project, not the caller's PATH
        feature_patch, tests_patch = pair(task, "two_conflicts")
        check = validation_only(task, GenerateOptions(backend="local"), feature_patch, tests_patch)
    assert check.valid, check.reason + "\n" + check.tests.output
    assert check.tests.source == "junit" and check.tests.counts.passed == 5
    assert any(path.startswith("/simple/pytest") for path in index.requests)
    assert any(path.endswith(".whl") for path in index.requests)


def test_uv_task_without_the_index_setting_fails_with_the_reason(tmp_path, monkeypatch):
    task = make_task(tmp_path / "fixture", run_tests=UV_RUN_TESTS_SH)
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("UV_OFFLINE", "1")
    feature_patch, tests_patch = pair(task, "two_conflicts")
    check = validation_only(task, GenerateOptions(backend="local"), feature_patch, tests_patch)
    assert not check.valid and "the new tests did not run" in check.reason
    assert check.tests.exit_code != 0


def _hostile_home(tmp_path):
    home = tmp_path / "home"
    hooks = home / "hooks"
    hooks.mkdir(parents=True)
    for name in ("pre-merge-commit", "pre-commit", "commit-msg", "post-checkout"):
        (hooks / name).write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
        (hooks / name).chmod(0o755)
    (home / ".gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n[merge]\n\tconflictStyle = zdiff3\n"
                                     "[user]\n\tname = Someone\n\temail = someone@example.com\n")
    return home


def test_verdicts_do_not_depend_on_the_users_git_setup(task, tmp_path, monkeypatch):
    before = _validate(task, "two_conflicts")
    home = _hostile_home(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    # the hostile setup is live for a plain git call
    probe = subprocess.run(["git", "config", "--global", "merge.conflictStyle"], capture_output=True, text=True,
                           env={**os.environ})
    assert probe.stdout.strip() == "zdiff3"
    validate._BASE_RUNS.clear()  # every run again, under the hostile setup
    after = _validate(task, "two_conflicts")
    assert after.valid == before.valid is True
    assert [c.model_dump() for c in after.conflicts] == [c.model_dump() for c in before.conflicts]
    assert not any("|||||||" in h for c in after.conflicts for h in c.hunks)  # no zdiff3 base section
    assert after.proofs.to_dict() == before.proofs.to_dict()


def test_a_test_that_only_imports_the_new_name_is_invalid_by_the_mutation_proof(task, tmp_path):
    result = _validate(task, "imports_only", tmp_path / "out")
    assert not result.valid
    found = result.proofs
    assert found.new_tests_ran.ok and found.pass_with_feature.ok
    # without the feature its file fails to import: a failure, but only by a missing name
    assert found.fail_without_feature.ok and found.fail_without_feature.reason == "failed by missing names only"
    assert not found.kills_mutants.ok and found.mutation_score == (0, 6)
    assert result.reason.startswith("kills mutants: the new tests do not check the feature's behaviour: 0/6")
    assert not found.existing_tests.ran  # stopped at the first failing proof
    payload = result.to_payload()
    assert (payload.valid, payload.mutants_killed, payload.mutants_total) == (False, 0, 6)


def test_tests_that_kill_the_mutants_make_the_same_feature_valid(task):
    result = _validate(task, "kills_mutants")
    assert result.valid, result.reason
    assert result.proofs.mutation_score == (6, 6)
    # the parametrized test counts once per case; the tests already in the file are not new
    assert result.proofs.new_tests_ran.counts["new"] == 4
    payload = result.to_payload()
    assert (payload.mutants_killed, payload.mutants_total) == (6, 6)
    assert "kill 6/6 mutants" in payload.reason


def test_all_proofs_runs_on_after_a_failure(task):
    result = _validate(task, "imports_only", all_proofs=True)
    assert not result.valid and not result.proofs.kills_mutants.ok
    assert result.proofs.existing_tests.ran and result.proofs.existing_tests.ok


def test_a_new_test_in_a_file_the_runner_does_not_run_is_not_counted(task):
    # the runner runs tests/test_ops.py only, as runner.sh does; the pair's new test lives elsewhere
    script = task.run_tests_sh.read_text().replace("$TEST_FILES", "tests/test_ops.py")
    task.run_tests_sh.write_text(script)
    result = _validate(task, "breaks_existing")
    assert not result.valid and result.tests.counts.total == 4  # the old tests ran and passed
    assert not result.proofs.new_tests_ran.ok
    assert result.reason.startswith("new tests ran: the new tests did not all run under the task's runner: "
                                    "tests/test_checked.py::test_checked never collected")


def test_an_empty_tests_patch_is_refused(task):
    feature_patch, _ = pair(task, "two_conflicts")
    with pytest.raises(StepError, match="^the tests patch is empty$"):
        validation_only(task, GenerateOptions(backend="local"), feature_patch, "\n")
