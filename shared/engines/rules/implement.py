"""Implementing an improvement in a working copy: ruff's own safe fixes, templates, small exact edits.

Nothing is faked: an improvement with no automatic fix raises ChangeRejectedError with the reason,
and every fix is verified afterwards (the finding is gone or reduced, the files still parse).
"""

from __future__ import annotations

import ast
import re
import string
import subprocess
from importlib import resources
from pathlib import Path

from shared.common.pyparse import parse_python
from shared.common.fs import UnsafePath, is_inside, one_line, write_inside
from shared.adapters.analyzers import Finding, ruff_fix, run_ruff, target_version, tool_command
import shared.engines.rules.facts as facts_mod
from shared.engines.rules.facts import RepoFacts
from shared.engines.rules.project import DEPENDABOT, ecosystem_commands
from shared.engines.rules.suggest import (
    COMMUNITY_DOCS,
    TEMPLATE_FILES,
    declared_license,
    existing_doc,
    project_version,
    release_notes_tool,
    wants_all_names,
)
from shared.events import Improvement
from shared.policy.behaviour import judge_site
from shared.ports.engine import Implementation
from shared.ports.errors import ChangeRejectedError

_MIT = {"mit", "mit license", "the mit license", "expat"}
_COMMUNITY_TEMPLATES = {"SECURITY.md": "SECURITY.md.tmpl", "CONTRIBUTING.md": "CONTRIBUTING.md.tmpl",
                        "CHANGELOG.md": "CHANGELOG.md.tmpl"}  # fmt: skip
_TEMPLATES = {
    "LICENSE": "LICENSE-MIT.tmpl",
    ".github/workflows/ci.yml": "ci.yml.tmpl",
    ".pre-commit-config.yaml": "pre-commit-config.yaml.tmpl",
    ".github/dependabot.yml": "dependabot.yml.tmpl",
    "mypy.ini": "mypy.ini.tmpl",
    **_COMMUNITY_TEMPLATES,
}
_NO_FIX = {
    "packaging-metadata": "no automatic fix: the missing metadata values are the maintainer's to choose",
    "lockfile": "no automatic fix offline: a lockfile needs a dependency resolver with network access "
    "(run `uv lock` or `poetry lock`)",
}


def render_template(template: str, values: dict[str, str]) -> str:
    """A bundled template filled with `values` (string.Template syntax; a missing value is a bug)."""
    text = resources.files("shared.engines.rules").joinpath("templates", template).read_text(encoding="utf-8")
    return string.Template(text).substitute(values)


def _ruff_version() -> str:
    out = subprocess.run(
        [*tool_command("ruff"), "--version"], check=False, capture_output=True, text=True, timeout=30
    ).stdout
    return out.split()[-1] if out.strip() else "0.6.0"


def template_values(facts: RepoFacts) -> dict[str, str]:
    """The repository facts the templates are filled with (deterministic for a given repository)."""
    authors = facts.project.get("authors") or []
    # Who handles a report is a maintainer: an author may have handed the project on (more-itertools
    # names its original author, who no longer maintains it).
    maintainers = facts.project.get("maintainers") or []
    emails = [a.get("email") for a in maintainers if isinstance(a, dict) and a.get("email")]
    meta_names = [a.get("name") for a in authors if isinstance(a, dict) and a.get("name")]
    holder = (facts.authors or meta_names or [f"The {facts.name} authors"])[0]
    branches = facts_mod.git(facts.root, "branch", "--format=%(refname:short)", check=False).split()
    packages = sorted({p.name.split(".")[0] for p in facts.packages}) or [facts.name.replace("-", "_")]
    values = {
        k: one_line(v)
        for k, v in {  # names from the target's metadata: one line each, no control chars
            "name": facts.name,
            "holder": holder,
            "year": str(facts.head_year or 1970),
            "python_version": facts_mod.python_version(facts),
            "test_command": facts_mod.test_command(facts),
            "install_command": facts_mod.install_command(facts),
            "contact": f"<{emails[0]}>"
            if emails
            else "the maintainers (use the forge's private vulnerability reporting)",
            "version": project_version(facts) or "",
            "changelog_line": _changelog_line(facts),
            "default_branch": "main" if "main" in branches or "master" not in branches else "master",
            "packages": ", ".join(packages),
            "ruff_version": _ruff_version(),
        }.items()
    }
    if values["changelog_line"]:  # its own bullet line (one_line took the line break)
        values["changelog_line"] = "\n" + values["changelog_line"]
    return {**values, **ecosystem_values(facts, values)}


def _changelog_line(facts: RepoFacts) -> str:
    """How a contributor records a user-visible change, as this project does it (or nothing)."""
    tool = release_notes_tool(facts)
    if tool:
        return f"- For anything a user would notice, add a release note the way the project does ({tool})."
    doc = existing_doc(facts.files, COMMUNITY_DOCS["CHANGELOG.md"])
    return f"- Add an entry to {doc} for anything a user would notice." if doc else ""


def ecosystem_values(facts: RepoFacts, values: dict[str, str]) -> dict[str, str]:
    """What differs by ecosystem: Dependabot's ecosystem, the install/test commands, the setup text."""
    language = facts.language or "python"
    package_json = (
        (facts.root / "package.json").read_text(errors="replace") if "package.json" in facts.files else ""
    )
    cmds = ecosystem_commands(language, facts.files, package_json)
    if cmds is None:  # Python (and the fallback): the values above
        return {
            "ecosystem": "pip",
            "runtime_line": f"{facts.name} supports Python {values['python_version']} and later.",
            "setup_commands": f"python -m venv .venv\n. .venv/bin/activate\n{values['install_command']}",
        }
    return {
        "ecosystem": DEPENDABOT[language],
        "install_command": cmds.install,
        "test_command": cmds.test,
        "runtime_line": cmds.runtime,
        "setup_commands": cmds.setup,
    }


def template_for(rel: str, facts: RepoFacts) -> str:
    """The bundled template that writes `rel` for this project's ecosystem."""
    if rel == ".github/workflows/ci.yml" and facts.language in ("javascript", "rust", "go"):
        return f"ci-{facts.language}.yml.tmpl"
    return _TEMPLATES[rel]


def _write_new(repo: Path, rel: str, content: str) -> None:
    try:
        write_inside(repo, rel, content)
    except UnsafePath as exc:
        raise ChangeRejectedError(f"{exc}; nothing was written") from None


def _templates(repo: Path, facts: RepoFacts, improvement: Improvement, targets: list[str]) -> Implementation:
    present = {t: existing_doc(facts.files, COMMUNITY_DOCS[t]) for t in targets if t in COMMUNITY_DOCS}
    if (
        "CHANGELOG.md" in targets
        and not present.get("CHANGELOG.md")
        and (release_notes_tool(facts) or project_version(facts) is None)
    ):
        present["CHANGELOG.md"] = release_notes_tool(facts) or "no version stated by the repository"
    missing = [t for t in targets if not (repo / t).exists() and not present.get(t)]
    if not missing:
        raise ChangeRejectedError(
            f"{', '.join(targets)} already exist(s): nothing to add, no automatic fix applies"
        )
    values = template_values(facts)
    for rel in missing:
        _write_new(repo, rel, render_template(template_for(rel, facts), values))
    written = [t for t in missing if (repo / t).is_file() and (repo / t).stat().st_size > 0]
    return Implementation(files=written, summary=f"added {', '.join(written)} from templates ({facts.name})")


def _license(repo: Path, facts: RepoFacts, improvement: Improvement) -> Implementation:
    declared = declared_license(facts)
    if not declared:
        raise ChangeRejectedError("no license is declared in the project metadata; choosing one is the owner's "
                                  "decision, so there is no automatic fix")  # fmt: skip
    if declared.lower().removesuffix(" license") not in _MIT and declared.lower() not in _MIT:
        raise ChangeRejectedError(f"the declared license `{declared}` has no bundled template (only MIT); "
                                  "add its text by hand")  # fmt: skip
    return _templates(repo, facts, improvement, ["LICENSE"])


def public_api_additions(module, version: object) -> list[str]:
    """The lines that declare what `module` (a package `__init__`) lacks: `__all__`, `__version__` (pure)."""
    lines = []
    if wants_all_names(module):
        lines.append("__all__ = [\n" + "".join(f'    "{n}",\n' for n in module.own_names) + "]\n")
    if not module.has_version and "." not in module.name and isinstance(version, str):
        lines.append(f'__version__ = "{version}"\n')
    return lines


def _public_api(repo: Path, facts: RepoFacts, improvement: Improvement) -> Implementation:
    rel = improvement.files[0]
    path = repo / rel
    source = path.read_text(encoding="utf-8")
    module = facts_mod.parse_module(rel, source)
    additions = public_api_additions(module, facts.project.get("version"))
    if module.parse_error or not additions:
        raise ChangeRejectedError(
            f"{rel} already declares its public API (or does not parse): no automatic fix"
        )
    new = (
        source + ("" if source.endswith("\n") or not source else "\n") + "".join("\n" + a for a in additions)
    )
    after = facts_mod.parse_module(rel, new)
    if after.parse_error or public_api_additions(after, facts.project.get("version")):
        raise ChangeRejectedError(f"the edit to {rel} did not take effect; no automatic fix")
    target = target_version(facts.requires_python)
    unused_before = len(run_ruff(repo, [rel], ["F401"], target))
    write_inside(repo, rel, new)
    unused_after = len(run_ruff(repo, [rel], ["F401"], target))
    if unused_after >= unused_before:  # every applied improvement removes a measured finding
        write_inside(repo, rel, source)
        raise ChangeRejectedError(f"declaring the public API of {rel} removes no measured finding (ruff F401 "
                                  "reports no re-export there as unused); not applied")  # fmt: skip
    declared = [name for name in ("__all__", "__version__") if any(a.startswith(name) for a in additions)]
    return Implementation(
        files=[rel],
        summary=f"declared {' and '.join(declared)} in {rel}, which removes "
        f"{unused_before - unused_after} unused-import finding(s)",
    )


def _snapshot(repo: Path, files: list[str]) -> dict[str, str]:
    return {f: (repo / f).read_text(encoding="utf-8") for f in files if (repo / f).is_file()}


def _count(findings: list[Finding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.path] = counts.get(f.path, 0) + 1
    return counts


def _ruff(repo: Path, facts: RepoFacts, improvement: Improvement, codes: list[str]) -> Implementation:
    files = [
        f for f in improvement.files if f.endswith(".py") and (repo / f).is_file() and is_inside(repo, f)
    ]  # ruff rewrites in place
    if not files:
        raise ChangeRejectedError(f"none of {improvement.files} exists in the working copy; no automatic fix")
    target = target_version(facts.requires_python)
    before = run_ruff(repo, files, codes, target, respect_config=True)
    if not before:
        raise ChangeRejectedError(f"ruff no longer reports {','.join(codes)} in these files; nothing to fix")
    originals = _snapshot(repo, files)
    unused_before = _count(run_ruff(repo, files, ["F401"], target, respect_config=True))
    ruff_fix(repo, files, codes, target, respect_config=True)
    # A rewrite such as `List[int]` -> `list[int]` can leave its import unused; remove exactly those
    # with ruff's own safe F401 fix, in the files where the fix created them.
    unused_after = _count(run_ruff(repo, files, ["F401"], target, respect_config=True))
    orphaned = sorted(f for f in files if unused_after.get(f, 0) > unused_before.get(f, 0))
    if orphaned:
        ruff_fix(repo, orphaned, ["F401"], target, respect_config=True)
    after = run_ruff(repo, files, codes, target, respect_config=True)
    changed = sorted(f for f, text in originals.items() if (repo / f).read_text(encoding="utf-8") != text)
    broken = [f for f in changed if _parse_error(repo / f)]
    if not changed or len(after) >= len(before) or broken:
        for f, text in originals.items():
            write_inside(repo, f, text)
        why = f"the fix broke parsing of {broken}" if broken else "ruff has no safe automatic fix for them"
        raise ChangeRejectedError(
            f"{len(before)} finding(s) of {','.join(codes)}: {why}, so no automatic fix was applied "
            "(unsafe fixes are never applied)"
        )
    summary = f"ruff fixed {len(before) - len(after)} of {len(before)} finding(s) of {','.join(codes)}"
    if after:
        summary += f"; {len(after)} left without a safe fix"
    return Implementation(files=changed, summary=summary)


def _parse_error(path: Path) -> bool:
    try:
        parse_python(path.read_text(encoding="utf-8"))
    except SyntaxError:
        return True
    return False


# Names from `random` that `secrets.SystemRandom().X` cannot stand in for: the generator classes
# (an instance built here is seeded by its caller, reproducible on purpose) and the state functions.
_NOT_SYSTEM_RANDOM = {"Random", "SystemRandom", "seed", "getstate", "setstate"}


def _random_names(tree: ast.Module) -> tuple[set[str], dict[str, str]]:
    """The names the `random` module is imported as, and the names imported from it (local name ->
    its name in `random`), wherever the file imports them (at the top or inside a function)."""
    modules = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
               if a.name == "random"}  # fmt: skip
    names = {a.asname or a.name: a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
             and n.module == "random" for a in n.names}  # fmt: skip
    return modules, names


def _random_calls(tree: ast.Module, line: int, *, generators: bool = False) -> list[ast.Call]:
    """Calls of the `random` module's functions on `line` (`random.choice(…)`, or `choice(…)` imported
    from random) that `secrets.SystemRandom()` can make instead; with `generators`, only the calls it
    cannot (`Random(seed)`, `random.seed(…)`)."""
    modules, names = _random_names(tree)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or node.lineno != line:
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules:
            name = f.attr
        elif isinstance(f, ast.Name) and f.id in names:
            name = names[f.id]
        else:
            continue
        if (name in _NOT_SYSTEM_RANDOM) == generators:
            out.append(node)
    return out


def _left_random_site(tree: ast.Module, rel: str, line: int) -> str:
    """Why a `random` site with no call to replace is left (pure)."""
    if _random_calls(tree, line, generators=True):
        return (
            f"{rel}:{line}: builds or seeds a generator of its own (`Random(…)`, `seed(…)`): reproducible "
            "on purpose, and `secrets` has no seeded equivalent"
        )
    return f"{rel}:{line}: no call of a `random` function found there"


def _add_import_secrets(lines: list[str], tree: ast.Module) -> list[str]:
    """`import secrets` among the file's top-level plain imports, in sorted position (isort's order)."""
    if any(
        isinstance(n, ast.Import) and any(a.name == "secrets" and not a.asname for a in n.names)
        for n in tree.body
    ):
        return lines
    plain = [n for n in tree.body if isinstance(n, ast.Import) and n.col_offset == 0]
    after = [n for n in plain if n.names[0].name > "secrets"]
    before = [n for n in plain if n.names[0].name < "secrets"]
    if before and (not after or after[0].lineno > before[-1].end_lineno):
        at = before[-1].end_lineno  # insert after this line
    elif after:
        at = after[0].lineno - 1
    else:
        first = next(
            (
                n
                for n in tree.body
                if isinstance(n, (ast.Import, ast.ImportFrom))
                and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")
            ),
            None,
        )
        at = first.lineno - 1 if first else 0
    return [*lines[:at], "import secrets\n", *lines[at:]]


def _secure_random(repo: Path, improvement: Improvement) -> Implementation:
    """`random.X(…)` -> `secrets.SystemRandom().X(…)` at the sites whose value feeds a secret, one site
    at a time; the other sites (retry jitter, sampling) are left as they are, with the reason."""
    sites = re.findall(r"`([^`:]+):(\d+)` (?:S311|bandit:B311)", improvement.changes)
    fixed, left, files = [], [], []
    for rel in sorted({p for p, _ in sites}):
        if not (rel.endswith(".py") and is_inside(repo, rel) and (repo / rel).is_file()):
            continue
        source = (repo / rel).read_text(encoding="utf-8")
        tree = parse_python(source)
        lines = source.splitlines(keepends=True)
        edits: list[ast.Call] = []
        for line in sorted({int(n) for p, n in sites if p == rel}):
            verdict = judge_site("S311", source, rel, line)
            calls = _random_calls(tree, line)
            if verdict.ok and calls:
                edits.extend(calls)
                fixed.append(verdict.reason)
            else:
                left.append(verdict.reason if calls else _left_random_site(tree, rel, line))
        if not edits:
            continue
        for call in sorted(edits, key=lambda c: (c.func.lineno, c.func.col_offset), reverse=True):
            f = call.func
            row = lines[f.lineno - 1].encode("utf-8")  # ast columns are byte offsets
            attr = f.attr if isinstance(f, ast.Attribute) else f.id
            new = row[: f.col_offset] + f"secrets.SystemRandom().{attr}".encode() + row[f.end_col_offset :]
            lines[f.lineno - 1] = new.decode("utf-8")
        lines = _add_import_secrets(lines, tree)
        new_source = "".join(lines)
        try:
            parse_python(new_source)
        except SyntaxError as exc:
            raise ChangeRejectedError(
                f"replacing `random` in {rel} broke parsing ({exc.msg}); not applied"
            ) from None
        write_inside(repo, rel, new_source)
        files.append(rel)
    if not files:
        raise ChangeRejectedError("behaviour-changing fix proposed, not applied: no `random` value here feeds a "
                                  "secret, and switching to `secrets` would change behaviour. "
                                  + " | ".join(left[:6]))  # fmt: skip
    summary = f"replaced `random` with `secrets.SystemRandom()` at {len(fixed)} site(s): " + "; ".join(
        fixed[:6]
    )
    if left:
        summary += f". Left as is ({len(left)}): " + "; ".join(left[:6])
    return Implementation(files=files, summary=summary)


def implement(repo: Path, improvement: Improvement) -> Implementation:
    """Apply `improvement` to the working copy at `repo`, or raise ChangeRejectedError saying why not."""
    kind, _, arg = (improvement.rule or "").partition(":")
    if kind == "fix" and arg == "secure-random":
        return _secure_random(repo, improvement)
    if kind == "ruff":
        return _ruff(repo, facts_mod.collect(repo), improvement, sorted(arg.split(",")))
    if kind == "secrets":
        raise ChangeRejectedError("no automatic fix for committed credentials: they must be revoked, and the code "
                                  "changed to read them from the environment or a secret store")  # fmt: skip
    if kind == "bandit":
        raise ChangeRejectedError(f"bandit {arg} has no automatic fix; it needs a maintainer's change")
    if kind != "check":
        raise ChangeRejectedError(f"the rules engine has no automatic fix for rule {improvement.rule!r}")
    if arg in _NO_FIX:
        raise ChangeRejectedError(_NO_FIX[arg])
    facts = facts_mod.collect(repo)
    if arg == "license":
        return _license(repo, facts, improvement)
    if arg == "community-docs":
        return _templates(
            repo, facts, improvement, [f for f in improvement.files if f in _COMMUNITY_TEMPLATES]
        )
    if arg in TEMPLATE_FILES:
        return _templates(repo, facts, improvement, TEMPLATE_FILES[arg])
    if arg == "public-api":
        return _public_api(repo, facts, improvement)
    raise ChangeRejectedError(f"the rules engine has no automatic fix for check {arg!r}")
