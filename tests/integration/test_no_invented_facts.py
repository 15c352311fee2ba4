"""Generated documents use only facts read from the repository; nothing duplicates a file it already has
(real git repositories, the rules engine's facts, suggestions and templates)."""

from __future__ import annotations

import subprocess

import pytest

import shared.engines.rules.facts as facts_mod
from shared.engines.rules.analyze import analyze_facts
from shared.engines.rules.implement import implement, template_values
from shared.engines.rules.suggest import compliance_improvements, integration_improvements, project_version
from shared.events import Improvement
from shared.ports.errors import ChangeRejectedError

pytestmark = pytest.mark.integration


def _repo(root, files: dict[str, str], tag: str | None = None):
    root.mkdir(parents=True)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    env = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"],
                ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "init"]):  # fmt: skip
        subprocess.run(["git", "-C", str(root), *cmd], check=True, env=env)
    if tag:
        subprocess.run(["git", "-C", str(root), "tag", tag], check=True, env=env)
    return facts_mod.collect(root)


def test_docs_under_github_or_docs_are_not_added_again_and_the_version_is_the_projects(tmp_path):
    facts = _repo(tmp_path / "p", {
        "pyproject.toml": '[project]\nname = "p"\ndynamic = ["version"]\n',
        "p/__init__.py": '__version__ = "4.16.0"\n',
        ".github/SECURITY.md": "# Security\n", "docs/CONTRIBUTING.rst": "Contributing\n",
    })  # fmt: skip
    assert project_version(facts) == "4.16.0"
    docs = [i for i in compliance_improvements(facts, []) if i.rule == "check:community-docs"]
    assert [d.files for d in docs] == [["CHANGELOG.md"]]
    implement(facts.root, docs[0])
    changelog = (facts.root / "CHANGELOG.md").read_text()
    assert "4.16.0" in changelog and "0.1.0" not in changelog
    assert not (facts.root / "SECURITY.md").exists() and not (facts.root / "CONTRIBUTING.md").exists()
    forced = Improvement(id="x", category="compliance", title="t", rationale="r", rule="check:community-docs",
                         files=["SECURITY.md", "CONTRIBUTING.md"], changes="")  # fmt: skip
    with pytest.raises(ChangeRejectedError, match="already exist"):
        implement(facts.root, forced)


def test_no_changelog_without_a_stated_version_or_beside_a_release_notes_tool(tmp_path):
    unversioned = _repo(tmp_path / "a", {"pyproject.toml": '[project]\nname = "a"\n', "a/__init__.py": ""})
    assert project_version(unversioned) is None
    assert not any("CHANGELOG.md" in i.files for i in compliance_improvements(unversioned, []))
    tagged = _repo(tmp_path / "b", {"setup.py": "", "b/__init__.py": ""}, tag="v9.2.1")
    assert project_version(tagged) == "9.2.1"
    towncrier = _repo(tmp_path / "c", {"pyproject.toml": '[project]\nname = "c"\nversion = "2.0"\n',
                                       "changelog.d/123.bugfix.md": "Fixed.\n", "c/__init__.py": ""})  # fmt: skip
    assert not any("CHANGELOG.md" in i.files for i in compliance_improvements(towncrier, []))
    assert "changelog.d/" in template_values(towncrier)["changelog_line"]


def test_configs_for_services_are_proposed_only_when_their_category_is_asked_for(tmp_path):
    facts = _repo(tmp_path / "d", {"pyproject.toml": '[project]\nname = "d"\nversion = "1.0"\n',
                                   "d/__init__.py": "x = 1\n"})  # fmt: skip
    everything = ["features", "security", "compliance", "integration"]
    ids = {i.id for i in integration_improvements(facts, everything)}
    assert not {"integration-dependabot", "integration-pre-commit"} & ids
    assert {"integration-dependabot", "integration-pre-commit"} <= {
        i.id for i in integration_improvements(facts, ["integration"])}
    assert "compliance-type-checking" not in {i.id for i in compliance_improvements(facts, [], everything)}


def test_a_javascript_specification_says_what_it_does_not_know(tmp_path):
    facts = _repo(tmp_path / "js", {"package.json": '{"name": "js", "main": "index.js", "bin": {"js": "cli.js"}}',
                                    "index.js": "module.exports = 1;\n", "test/index.test.js": "//\n"})  # fmt: skip
    spec = analyze_facts(facts).specification
    assert "`js` → `cli.js` (package.json bin)" in spec and "test/index.test.js" in spec
    assert "no test files found" not in spec and "none declared" not in spec.split("## Dependencies")[0]


def test_contributing_and_security_say_only_what_the_repository_says(tmp_path):
    facts = _repo(tmp_path / "s", {
        "setup.py": "", "s/__init__.py": "", "HISTORY.rst": "History\n", "requirements-dev.txt": "pytest\npytz\n",
        "pyproject.toml": '[project]\nname = "s"\nversion = "1.2.2"\n',
    })  # fmt: skip
    docs = Improvement(id="x", category="compliance", title="t", rationale="r", rule="check:community-docs",
                       files=["SECURITY.md", "CONTRIBUTING.md"], changes="")  # fmt: skip
    implement(facts.root, docs)
    contributing = (facts.root / "CONTRIBUTING.md").read_text()
    # the tests' own requirements are installed, and the changelog bullet is a line of its own
    assert "python -m pip install -e . -r requirements-dev.txt\n" in contributing
    assert "why they are needed.\n- Add an entry to HISTORY.rst" in contributing
    security = (facts.root / "SECURITY.md").read_text()
    assert "within a week" not in security and "latest release" not in security  # no promise it never made
    extra = _repo(tmp_path / "t", {"pyproject.toml": '[project]\nname = "t"\n[project.optional-dependencies]\n'
                                                     'tests = ["pytest"]\n', "t/__init__.py": ""})  # fmt: skip
    assert facts_mod.install_command(extra) == 'python -m pip install -e ".[tests]"'



def test_contributing_names_the_projects_own_test_command_and_dev_requirements(tmp_path):
    """more-itertools runs `python -m unittest` (tox, Makefile) from requirements/development.txt."""
    tox = _repo(tmp_path / "m", {
        "pyproject.toml": '[project]\nname = "m"\nversion = "10.5.0"\n', "m/__init__.py": "",
        "tests/test_m.py": "", "requirements/development.txt": "coverage\n",
        "tox.ini": "[tox]\nenvlist = py39\n\n[testenv]\ncommands = {envpython} -m unittest -v {posargs}\n",
        "Makefile": "test:\n\tpython3 -m unittest -v ${tests}\n",
    })  # fmt: skip
    assert facts_mod.test_command(tox) == "python -m unittest -v"
    assert facts_mod.install_command(tox) == "python -m pip install -e . -r requirements/development.txt"
    make = _repo(tmp_path / "k", {"k/__init__.py": "", "tests/test_k.py": "", "Makefile": "test:\n\tnose2\n"})
    assert facts_mod.test_command(make) == "make test"
    plain = _repo(tmp_path / "p", {"p/__init__.py": "", "tests/test_p.py": ""})
    assert facts_mod.test_command(plain) == "python -m pytest"


def test_release_notes_kept_as_docs_versions_are_a_changelog(tmp_path):
    facts = _repo(tmp_path / "v", {"pyproject.toml": '[project]\nname = "v"\nversion = "10.5.0"\n',
                                   "v/__init__.py": "", "docs/versions.rst": "Version History\n"})  # fmt: skip
    assert not any("CHANGELOG.md" in i.files for i in compliance_improvements(facts, []))


def test_security_reports_go_to_a_declared_maintainer_never_to_an_author(tmp_path):
    docs = Improvement(id="x", category="compliance", title="t", rationale="r", rule="check:community-docs",
                       files=["SECURITY.md"], changes="")  # fmt: skip
    meta = '[project]\nname = "{n}"\nversion = "1"\nauthors = [{{name = "Erik", email = "erik@example.com"}}]\n'
    authored = _repo(tmp_path / "a", {"pyproject.toml": meta.format(n="a"), "a/__init__.py": ""})
    implement(authored.root, docs)
    security = (authored.root / "SECURITY.md").read_text()
    assert "erik@example.com" not in security and "private vulnerability reporting" in security
    assert max(len(line) for line in security.splitlines()) <= 100  # the contact does not run the line on
    maintained = _repo(tmp_path / "b", {"b/__init__.py": "", "pyproject.toml": meta.format(n="b")
                                        + 'maintainers = [{name = "Bo", email = "bo@example.com"}]\n'})  # fmt: skip
    implement(maintained.root, docs)
    assert "<bo@example.com>" in (maintained.root / "SECURITY.md").read_text()
