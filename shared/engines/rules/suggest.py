"""From facts and findings to improvements, grouped into the four categories (pure).

An improvement's `rule` says what is behind it and how `implement` treats it:
`ruff:<codes>` (ruff's own safe fixes), `bandit:<id>` and `secrets:<kinds>` (no automatic fix),
`check:<name>` (a file check; most have a template, some have no automatic fix).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path, PurePosixPath

from shared.adapters.analyzers import Finding
from shared.engines.rules.facts import Module, RepoFacts
from shared.events import Improvement
from shared.policy.behaviour import judge_site
from shared.policy.findings import is_security
from shared.policy.review import explicitly_asked

MAX_PER_CATEGORY = 4
_MAX_LISTED = 20


LICENSE_FILES = ("LICENSE", "LICENCE", "COPYING")
# A document counts as present wherever it is in the tree (`.github/SECURITY.md`, `docs/CONTRIBUTING.rst`):
# adding a second copy at the root would only duplicate it.
COMMUNITY_DOCS = {
    "SECURITY.md": ("SECURITY",),
    "CONTRIBUTING.md": ("CONTRIBUTING",),
    "CHANGELOG.md": (
        "CHANGELOG",
        "CHANGES",
        "HISTORY",
        "NEWS",
        "RELEASE_NOTES",
        "RELEASE-NOTES",
        "RELEASES",
        "WHATSNEW",
        "VERSIONS",
    ),  # more-itertools keeps docs/versions.rst
}
_DOC_SUFFIXES = ("", ".md", ".rst", ".txt", ".markdown", ".adoc", ".org")
# Release-notes tools keep their own fragments; a hand-written CHANGELOG.md would contradict them.
RELEASE_NOTES_DIRS = (
    "changelog.d",
    "newsfragments",
    "news",
    "changes",
    ".changeset",
    "releasenotes",
    "changelog",
)
RELEASE_NOTES_FILES = (
    "towncrier.toml",
    ".towncrier.toml",
    ".changeset/config.json",
    "cliff.toml",
    ".release-please-manifest.json",
    "release-please-config.json",
)
# Configs for services a project may not use: proposed only when the category is asked for on its own.
OPT_IN_CHECKS = ("dependabot", "pre-commit", "type-checking")
LOCKFILES = ("uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock", "pylock.toml", "requirements.lock")
METADATA_FIELDS = ("description", "readme", "requires-python", "license", "authors")

# Checks whose implementation writes a template: the file each one creates.
TEMPLATE_FILES = {
    "license": ["LICENSE"],
    "ci-workflow": [".github/workflows/ci.yml"],
    "pre-commit": [".pre-commit-config.yaml"],
    "dependabot": [".github/dependabot.yml"],
    "type-checking": ["mypy.ini"],
}


def slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def existing_doc(files: list[str], stems: tuple[str, ...]) -> str | None:
    """The first file anywhere in the tree whose name is one of `stems` (any case, a document suffix)."""
    wanted = {s.lower() for s in stems}
    for f in files:
        name = PurePosixPath(f).name.lower()
        stem, dot, suffix = name.partition(".")
        if stem in wanted and (not dot or "." + suffix in _DOC_SUFFIXES):
            return f
    return None


def _has(files: list[str], stems: tuple[str, ...]) -> bool:
    return existing_doc(files, stems) is not None


def release_notes_tool(facts: RepoFacts) -> str | None:
    """How the project writes its release notes when not by a CHANGELOG file (towncrier, changesets…)."""
    tool = facts.pyproject.get("tool") or {}
    for name in ("towncrier", "git-cliff", "semantic_release", "commitizen"):
        if name in tool:
            return f"[tool.{name}] in pyproject.toml"
    files = set(facts.files)
    for f in RELEASE_NOTES_FILES:
        if f in files:
            return f
    for f in facts.files:
        parts = PurePosixPath(f).parts
        if len(parts) > 1 and any(p.lower() in RELEASE_NOTES_DIRS for p in parts[:-1]):
            return "/".join(parts[: [p.lower() in RELEASE_NOTES_DIRS for p in parts].index(True) + 1]) + "/"
    return None


def _listing(findings: list[Finding]) -> str:
    lines = [f"- `{f.path}:{f.line}` {f.code}: {f.message}" for f in findings[:_MAX_LISTED]]
    if len(findings) > _MAX_LISTED:
        lines.append(f"- … and {len(findings) - _MAX_LISTED} more")
    return "\n".join(lines)


def _files(findings: list[Finding]) -> list[str]:
    return sorted({f.path for f in findings})


# -- security ---------------------------------------------------------------------------------


def _security_group(code: str, findings: list[Finding]) -> tuple[tuple, Improvement]:
    files = _files(findings)
    fixable = sum(f.fixable for f in findings)
    first = findings[0]
    where = files[0] if len(files) == 1 else f"{len(files)} files"
    if code.startswith("secret:"):
        kinds = sorted({f.code.removeprefix("secret:") for f in findings})
        improvement = Improvement(
            id="security-secrets",
            category="security",
            title=f"Remove {len(findings)} committed credential(s) from {where}",
            rationale=(
                "Text that has the shape of a real credential ("
                + ", ".join(kinds)
                + ") is committed. Anyone with read access to the history can use it; it must be revoked "
                "and loaded from the environment or a secret store instead. There is no automatic fix."
            ),
            files=files,
            changes=_listing(findings),
            rule="secrets:" + ",".join(kinds),
        )
        return (0, 0, "secrets"), improvement
    tool = "bandit" if code.startswith("bandit:") else "ruff"
    bare = code.removeprefix("bandit:")
    fix_note = (
        f"{tool} has a safe automatic fix for {fixable} of them."
        if fixable
        else f"{tool} has no safe automatic fix; this needs a decision by a maintainer."
    )
    kind = "security rule"
    improvement = Improvement(
        id=f"security-{slug(bare)}" + (f"-{slug(files[0])}" if len(files) == 1 else ""),
        category="security",
        title=f"Fix {len(findings)} {tool} {bare} finding(s) ({first.name or 'security'}) in {where}",
        rationale=f"{tool} {kind} {bare} ({first.name}) reports: {first.message}. {fix_note}",
        files=files,
        changes=_listing(findings),
        rule=f"{tool}:{bare}",
    )
    # Order: what we can fix first, then the most frequent.
    tier = 1 if fixable else 2
    return (tier, -len(findings), code), improvement


def secure_random_improvement(root: Path, findings: list[Finding]) -> Improvement | None:
    """`random` -> `secrets` where the value feeds a secret (S311), with each site's verdict read from
    the code (names and data flow, shared/policy/behaviour.py); None when `random` is not used."""
    sites = sorted(f for f in findings if f.code in ("S311", "bandit:B311"))
    if not sites:
        return None
    verdicts = []
    for f in sites:
        try:
            source = (root / f.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        verdicts.append((f, judge_site("S311", source, f.path, f.line)))
    fix = [f for f, v in verdicts if v.ok]
    why = "\n".join(f"- {'fix' if v.ok else 'leave'}: {v.reason}" for _, v in verdicts[:_MAX_LISTED])
    files = _files(fix) or _files(sites)
    title = (f"Use `secrets` for the {len(fix)} `random` value(s) that feed a secret in "
             f"{files[0] if len(files) == 1 else f'{len(files)} files'}" if fix
             else f"`random` is used at {len(sites)} site(s), none feeding a secret: left as is")  # fmt: skip
    return Improvement(
        id="security-secure-random", category="security", title=title,
        rationale=("`random` is predictable: a token, password, key, salt or nonce drawn from it can be guessed. "
                   "Switching a use that is not a secret changes behaviour (seeding `random` no longer reproduces "
                   "it), so only the sites whose value feeds a secret are changed, each on its own:\n" + why),
        files=files, changes="\n".join(f"- `{f.path}:{f.line}` {f.code}: {f.message}" for f in sites),
        rule="fix:secure-random",
    )  # fmt: skip


def security_improvements(findings: list[Finding]) -> list[Improvement]:
    groups: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.code.startswith("secret:"):
            groups["secret:"].append(f)
        elif is_security(f.code):
            groups[f.code].append(f)
    ranked = sorted(_security_group(code, sorted(fs)) for code, fs in groups.items())
    return [imp for _, imp in ranked[:MAX_PER_CATEGORY]]


# -- compliance -------------------------------------------------------------------------------


def declared_license(facts: RepoFacts) -> str | None:
    """The license the project metadata declares (SPDX-ish text), if any."""
    lic = facts.project.get("license")
    if isinstance(lic, str) and lic.strip():
        return lic.strip()
    if isinstance(lic, dict) and lic.get("text"):
        return str(lic["text"]).strip()
    for classifier in facts.project.get("classifiers", []) or []:
        if classifier.startswith("License :: OSI Approved :: "):
            return classifier.rsplit("::", 1)[1].strip()
    poetry = ((facts.pyproject.get("tool") or {}).get("poetry") or {}).get("license")
    return poetry or facts.setup_cfg.get("metadata", {}).get("license") or None


def has_type_checking(facts: RepoFacts) -> bool:
    tool = facts.pyproject.get("tool") or {}
    files = set(facts.files)
    return (
        "mypy" in tool
        or "pyright" in tool
        or bool(files & {"mypy.ini", ".mypy.ini", "pyrightconfig.json"})
        or "mypy" in facts.setup_cfg
        or any(f.endswith("/py.typed") for f in files)
    )


def metadata_gaps(facts: RepoFacts) -> list[str]:
    if facts.language != "python" or not facts.python_files:
        return []
    if not facts.project and "setup.py" not in facts.files and "setup.cfg" not in facts.files:
        if (facts.pyproject.get("tool") or {}).get("poetry"):
            return []
        return ["no pyproject.toml [project] table"]
    if not facts.project:
        return []
    dynamic = set(facts.project.get("dynamic", []) or [])
    return [f for f in METADATA_FIELDS if f not in facts.project and f not in dynamic]


def project_version(facts: RepoFacts) -> str | None:
    """The project's version as the repository states it: its metadata, a `__version__` literal in
    its top package, or its latest tag; None when none says (a `[0.1.0]` would be invented)."""
    poetry = ((facts.pyproject.get("tool") or {}).get("poetry") or {}).get("version")
    setup_cfg = facts.setup_cfg.get("metadata", {}).get("version", "")
    for value in (facts.project.get("version"), poetry, setup_cfg):
        if isinstance(value, str) and re.match(r"v?\d", value.strip()):
            return value.strip().removeprefix("v")
    for pkg in sorted(facts.packages, key=lambda p: p.name.count(".")):
        if pkg.has_version and (facts.root / pkg.path).is_file():
            text = (facts.root / pkg.path).read_text(encoding="utf-8", errors="replace")
            m = re.search(r"^__version__\s*(?::\s*str\s*)?=\s*[\"']v?(\d[^\"']*)[\"']", text, re.MULTILINE)
            if m:
                return m.group(1)
    from shared.adapters.git import run_git

    tag = (
        run_git(facts.root, "describe", "--tags", "--abbrev=0").stdout.strip()
        if (facts.root / ".git").exists()
        else ""
    )
    return tag.removeprefix("v") if re.match(r"v?\d", tag) else None


def compliance_improvements(
    facts: RepoFacts, findings: list[Finding], categories: list[str] = ()
) -> list[Improvement]:
    out: list[Improvement] = []
    root_files = [f for f in facts.files if "/" not in f]
    if not _has(root_files, LICENSE_FILES):
        declared = declared_license(facts)
        note = (
            f"The metadata declares `{declared}`; the LICENSE file with its text is missing."
            if declared
            else "No license is declared either; choosing one is the owner's decision (no automatic fix)."
        )
        out.append(Improvement(
            id="compliance-license", category="compliance", title="Add a LICENSE file",
            rationale="Without a LICENSE file nobody may legally reuse the code. " + note,
            files=["LICENSE"], changes=f"Create LICENSE ({declared or 'license to be chosen'}).",
            rule="check:license",
        ))  # fmt: skip
    missing_docs = [
        doc
        for doc, stems in COMMUNITY_DOCS.items()
        if not _has(facts.files, stems) and (facts.language or doc != "CONTRIBUTING.md")
    ]  # no setup to describe without an ecosystem
    if release_notes_tool(facts) or project_version(facts) is None:  # its own tool, or no version to start at
        missing_docs = [d for d in missing_docs if d != "CHANGELOG.md"]
    if missing_docs:
        out.append(Improvement(
            id="compliance-community-docs", category="compliance",
            title="Add " + ", ".join(missing_docs),
            rationale=(
                "A security policy tells reporters how to disclose privately, a contributing guide says how "
                "to run the tests, and a changelog tells users what changed. Missing: " + ", ".join(missing_docs) + "."
            ),
            files=missing_docs, changes="\n".join(f"Create {d} from a template filled with the project's facts."
                                                  for d in missing_docs),
            rule="check:community-docs",
        ))  # fmt: skip
    if (
        facts.language == "python"
        and facts.python_files
        and not has_type_checking(facts)
        and explicitly_asked("compliance", list(categories))
    ):
        out.append(Improvement(
            id="compliance-type-checking", category="compliance", title="Add a type-checking configuration",
            rationale="There is no mypy or pyright configuration and no py.typed marker, so type annotations are "
                      "never checked. A mypy.ini pins the Python version and the packages to check.",
            files=["mypy.ini"], changes="Create mypy.ini.", rule="check:type-checking",
        ))  # fmt: skip
    gaps = metadata_gaps(facts)
    if gaps:
        out.append(Improvement(
            id="compliance-packaging-metadata", category="compliance",
            title="Complete the packaging metadata",
            rationale="Package indexes and users rely on the project metadata. Missing: " + ", ".join(gaps)
                      + ". The values are the maintainer's to choose, so there is no automatic fix.",
            files=["pyproject.toml"], changes="\n".join(f"- add `{g}`" for g in gaps),
            rule="check:packaging-metadata",
        ))  # fmt: skip
    return out[:MAX_PER_CATEGORY]


# -- integration ------------------------------------------------------------------------------


def has_ci(files: list[str]) -> bool:
    return any(
        f.startswith(".github/workflows/")
        and f.endswith((".yml", ".yaml"))
        or f
        in (".gitlab-ci.yml", "azure-pipelines.yml", "Jenkinsfile", ".travis.yml", "bitbucket-pipelines.yml")
        or f.startswith(".circleci/")
        for f in files
    )


def integration_improvements(facts: RepoFacts, categories: list[str] = ()) -> list[Improvement]:
    """CI, pre-commit, Dependabot and a lockfile; the configs of services a project may not use
    (OPT_IN_CHECKS) only when integration is asked for on its own."""
    out: list[Improvement] = []
    opt_in = explicitly_asked("integration", list(categories))
    files = facts.files
    if facts.language is None:  # no ecosystem we can build or test: nothing sensible to add
        return out
    if not has_ci(files):
        out.append(Improvement(
            id="integration-ci-workflow", category="integration", title="Add a CI workflow that runs the tests",
            rationale="No continuous-integration configuration exists, so nothing runs the tests on a pull "
                      "request. A GitHub Actions workflow installs the project and runs its test command.",
            files=[".github/workflows/ci.yml"], changes="Create .github/workflows/ci.yml.", rule="check:ci-workflow",
        ))  # fmt: skip
    if opt_in and ".pre-commit-config.yaml" not in files and facts.language == "python":  # hooks are ruff's
        out.append(Improvement(
            id="integration-pre-commit", category="integration", title="Add a pre-commit configuration",
            rationale="Without pre-commit hooks, lint and whitespace problems reach review. The config runs "
                      "ruff and the standard hygiene hooks before each commit.",
            files=[".pre-commit-config.yaml"], changes="Create .pre-commit-config.yaml.", rule="check:pre-commit",
        ))  # fmt: skip
    renovate = ("renovate.json", ".github/renovate.json", "renovate.json5", ".renovaterc")
    if opt_in and not any(
        f in files for f in (".github/dependabot.yml", ".github/dependabot.yaml", *renovate)
    ):
        out.append(Improvement(
            id="integration-dependabot", category="integration", title="Keep dependencies up to date with Dependabot",
            rationale="No dependency-update configuration exists, so security releases of dependencies and "
                      "actions go unnoticed. Dependabot opens weekly update pull requests.",
            files=[".github/dependabot.yml"], changes="Create .github/dependabot.yml.", rule="check:dependabot",
        ))  # fmt: skip
    from shared.engines.rules.facts import dependencies

    if (
        facts.language == "python"
        and dependencies(facts)
        and not any(Path(f).name in LOCKFILES for f in files)
    ):
        out.append(Improvement(
            id="integration-lockfile", category="integration", title="Commit a dependency lockfile",
            rationale="The project declares dependencies but commits no lockfile, so two installs can resolve "
                      "different versions. Creating one needs a resolver with network access (e.g. `uv lock`); "
                      "there is no offline automatic fix.",
            files=["uv.lock"], changes="Run `uv lock` and commit uv.lock.", rule="check:lockfile",
        ))  # fmt: skip
    return out[:MAX_PER_CATEGORY]


# -- features ---------------------------------------------------------------------------------


# A hand-kept `__all__` is a second list to keep in step with the imports above it: a maintainer
# takes that for a handful of re-exports, not for a namespace of dozens (toolz.curried's 75 names
# were declined). Past this many names, whether to declare them is left to the maintainer.
MAX_ALL_NAMES = 20


def wants_all_names(module: Module) -> bool:
    """True when a package `__init__` without `__all__` re-exports a few of its own names (1 to
    MAX_ALL_NAMES), the one case where an `__all__` is proposed."""
    return module.all_names is None and 0 < len(module.own_names) <= MAX_ALL_NAMES


def features_improvements(facts: RepoFacts) -> list[Improvement]:
    """Per package: declare the public API (`__all__`) and the running version (`__version__`).

    Both go into one improvement per package because both edit its `__init__.py`; two
    improvements patching the same lines would conflict when their patches are stacked.
    """
    out: list[Improvement] = []
    version = facts.project.get("version")
    for pkg in facts.packages:
        if pkg.parse_error is not None:
            continue
        wants_version = "." not in pkg.name and isinstance(version, str) and not pkg.has_version
        wants_all = wants_all_names(pkg)
        if not (wants_version or wants_all):
            continue
        reasons, changes = [], []
        if wants_all:
            reasons.append(
                f"`{pkg.name}` re-exports {len(pkg.own_names)} names without `__all__`, so linters see "
                "them as unused imports and `from … import *` exports whatever happens to be bound"
            )
            changes.append("Add `__all__ = [" + ", ".join(repr(n) for n in pkg.own_names) + "]`.")
        if wants_version:
            reasons.append(
                f"the metadata declares version {version} but `{pkg.name}` has no `__version__`, so "
                "users and bug reports cannot tell which release is running"
            )
            changes.append(f'Add `__version__ = "{version}"`.')
        what = " and ".join(w for w, on in (("`__all__`", wants_all), ("`__version__`", wants_version)) if on)
        out.append(Improvement(
            id=f"features-public-api-{slug(pkg.name)}", category="features",
            title=f"Declare {what} in `{pkg.name}`",
            rationale="; ".join(reasons).capitalize() + ".",
            files=[pkg.path], changes="\n".join(changes), rule="check:public-api",
        ))  # fmt: skip
    return sorted(out, key=lambda i: i.id)[:MAX_PER_CATEGORY]


FEATURES_NONE_NOTE = (
    "No feature can be derived from static facts alone: ruff finds no modernisation (pyupgrade) it can "
    "apply, and every package declares `__all__` and `__version__` where the metadata allows. "
    "New features need a model (`--engine llm`)."
)


def suggest_all(
    facts: RepoFacts,
    findings: list[Finding],
    categories: list[str],
    lint_findings: list[Finding] = (),
    security_first: list[Improvement] = (),
    notes_in: dict[str, str] | None = None,
) -> tuple[list[Improvement], dict]:
    """The improvements for `categories` (in category order) and a note for each category left empty.

    Low-severity security findings without a fix (S603 "check the input of this call", S607…) are
    not proposed: nothing can be done about them automatically. `lint_findings` are ruff's findings of the lint families under the repository's own config
    (see lint.py); `security_first` are fixes chosen elsewhere (codemods) that go before the
    security findings they cover; `notes_in` are notes to carry (e.g. why codemods are unavailable).
    """
    from shared.engines.rules.lint import lint_improvements
    from shared.policy.findings import severity

    from shared.engines.rules.sites import split_lint

    kept, held = split_lint(facts.root, list(lint_findings))
    lint = lint_improvements(kept)
    secure_random = secure_random_improvement(facts.root, findings) if "security" in categories else None
    if secure_random and secure_random.title.startswith("Use"):  # a predictable secret goes first
        security_first = [secure_random, *security_first]
    elif secure_random:
        security_first = [*security_first, secure_random]
    covered = {f"{c}" for imp in security_first for c in _covered_codes(imp)} | {"S311", "bandit:B311"}
    by_category = {
        "security": lambda: [
            *security_first,
            *security_improvements(
                [
                    f
                    for f in findings
                    if not _is_excluded(f) and f.code not in covered and severity(f.code) != "low"
                ]
            ),
        ],
        "compliance": lambda: [
            *[i for i in lint if i.category == "compliance"],
            *compliance_improvements(facts, findings, categories),
        ],
        "integration": lambda: integration_improvements(facts, categories),
        "features": lambda: [*[i for i in lint if i.category == "features"], *features_improvements(facts)],
    }
    improvements: list[Improvement] = []
    notes: dict[str, str] = {}
    for category in ("features", "security", "compliance", "integration"):
        if category not in categories:
            continue
        found = by_category[category]()[:MAX_PER_CATEGORY]
        improvements.extend(found)
        if not found:
            notes[category] = FEATURES_NONE_NOTE if category == "features" else f"No {category} findings."
        held_here = [h for h in held if _lint_category(h.split(" ", 1)[0]) == category]
        if held_here:
            notes[category] = (
                notes.get(category, "") + " Left as is, because the fix would change behaviour "
                "there: " + " | ".join(held_here[:_MAX_LISTED])
            ).strip()
        if category in (notes_in or {}):
            notes[category] = (notes_in[category] + " " + notes.get(category, "")).strip()
    return improvements, notes


def _lint_category(code: str) -> str | None:
    from shared.engines.rules.lint import family_of

    family = family_of(code)
    return family.category if family else None


def _covered_codes(improvement: Improvement) -> list[str]:
    """The finding codes a codemod improvement removes (its `changes` list them as `path:line` CODE)."""
    return re.findall(r"` ((?:S|bandit:B)\d+):", improvement.changes)


def _is_excluded(finding: Finding) -> bool:
    return finding.code.startswith("UP")  # pyupgrade findings are a compliance matter
