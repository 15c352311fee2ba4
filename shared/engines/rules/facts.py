"""Facts about a repository that can be computed without a model: files, modules, metadata, git history.

`collect(repo)` does the I/O once; everything else here reads the returned `RepoFacts`.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import os
import sys
import threading
import tomllib
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.adapters.git import run_git
from shared.engines.rules.project import detect as detect_project
from shared.common.budget import MAX_FILE_BYTES, SNIFF_BYTES
from shared.common.fs import is_inside
from shared.common.pyparse import parse_python
from shared.policy.paths import is_test_path

_SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "build", "dist", "__pycache__", ".tox", ".nox"}
_LANGUAGES = {
    ".py": "Python", ".pyi": "Python", ".js": "JavaScript", ".ts": "TypeScript", ".go": "Go", ".rs": "Rust",
    ".java": "Java", ".c": "C", ".h": "C", ".cpp": "C++", ".rb": "Ruby", ".sh": "Shell", ".md": "Markdown",
    ".rst": "reStructuredText", ".toml": "TOML", ".yml": "YAML", ".yaml": "YAML", ".json": "JSON",
    ".cfg": "INI", ".ini": "INI", ".html": "HTML", ".css": "CSS", ".sql": "SQL", ".txt": "Text",
}  # fmt: skip


@dataclass
class Module:
    name: str  # dotted
    path: str  # relative, posix
    is_package: bool
    docstring: str
    functions: list[str]
    classes: list[str]
    all_names: list[str] | None  # a static `__all__`, if any
    top_level: list[str]  # public names bound at top level (defs, classes, assignments, imports)
    own_names: list[str]  # public names it defines or imports from its own top-level package
    has_version: bool
    imports: list[str]  # absolute dotted names imported (relative imports resolved)
    has_main_guard: bool
    lines: int
    parse_error: str | None = None


class _ParsedOnFirstUse:
    """`RepoFacts.modules`, parsed from the repository's Python files the first time a rule reads
    it (not in `collect`): parsing is ~0.5 s per MB of source, and the model's analysis, the
    scans and most implement rules never look at the modules. They are parsed from the bytes
    `collect` read (`RepoFacts.sources`), so a rule that edits the working copy afterwards still
    sees the modules as they were when collected. Given a list, it holds that."""

    def __set_name__(self, owner, name: str) -> None:
        self._slot = f"_{name}"

    def __get__(self, facts, owner=None):
        if facts is None:
            return None  # the dataclass default: parse on first use
        modules = facts.__dict__.get(self._slot)
        if modules is None:
            modules = facts.__dict__[self._slot] = parse_modules(facts.sources)
            facts.sources = {}  # parsed: the bytes are not needed again
        return modules

    def __set__(self, facts, value) -> None:
        facts.__dict__[self._slot] = value


@dataclass
class RepoFacts:
    root: Path
    name: str
    files: list[str]
    modules: list[Module] = _ParsedOnFirstUse()  # type: ignore[assignment]
    pyproject: dict[str, Any] = field(default_factory=dict)
    setup_cfg: dict[str, dict[str, str]] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)  # by number of commits, most first
    head_year: int | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why no tool reads it (budget.skip_reason)
    language: str | None = "python"  # the primary ecosystem (engines/rules/project.py)
    languages: list[str] = field(default_factory=list)
    # path -> bytes of each Python file read by `collect`, until `modules` is first parsed from them
    sources: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def project(self) -> dict[str, Any]:
        return self.pyproject.get("project", {}) or {}

    @property
    def python_files(self) -> list[str]:
        """Python files the tools may read: over-budget and binary ones left out (see `skipped`)."""
        return [f for f in self.files if f.endswith(".py") and f not in self.skipped]

    @property
    def module_names(self) -> set[str]:
        return {m.name for m in self.modules}

    @property
    def packages(self) -> list[Module]:
        return [m for m in self.modules if m.is_package and not _is_test_module(m.path)]

    @property
    def requires_python(self) -> str | None:
        return self.project.get("requires-python") or self.setup_cfg.get("options", {}).get("python_requires")

    @property
    def has_tests(self) -> bool:
        return any(_is_test_module(f) and Path(f).name.startswith("test") for f in self.python_files)


def _is_test_module(path: str) -> bool:
    return is_test_path(path)


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = run_git(repo, *args, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()[:300]}")
    return proc.stdout


def list_files(repo: Path, refused: dict[str, str] | None = None) -> list[str]:
    """The repository's files (tracked and untracked-but-not-ignored when it is a git repository), sorted.

    A symlink that leads out of the repository (or into its `.git`) is never listed, so nothing
    reads what it points at; its path and why go into `refused` when one is given."""
    if (repo / ".git").exists():
        out = git(repo, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
        root = str(repo)  # os.path, not pathlib: a Path per file was a fifth of listing 2,400 files
        names = {n for n in out.split("\0") if n and os.path.isfile(f"{root}/{n}")}  # git's names are relative
    else:
        names = {
            p.relative_to(repo).as_posix()
            for p in repo.rglob("*")
            if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(repo).parts)
        }
    kept = []
    links: dict[str, bool] = {}
    for name in sorted(n for n in names if not _SKIP_DIRS.intersection(n.split("/")[:-1])):
        # Only a symlink can lead out: resolving every path (realpath, a syscall per component)
        # was a third of reading a 2,400-file repository, so only paths through one are resolved.
        if not _through_symlink(repo, name, links) or is_inside(repo, name):
            kept.append(name)
        elif refused is not None:
            refused[name] = "a symlink that leads out of the repository: not read"
    return kept


def _through_symlink(repo: Path, name: str, links: dict[str, bool]) -> bool:
    """Whether `name` or one of its directories is a symlink (`links` caches each prefix's answer)."""
    prefix, root = "", str(repo)
    for part in name.split("/"):
        prefix = f"{prefix}/{part}" if prefix else part
        if prefix not in links:
            links[prefix] = os.path.islink(f"{root}/{prefix}")  # os.path.join was a tenth of collect
        if links[prefix]:
            return True
    return False


def module_name(path: str) -> tuple[str, bool]:
    """Dotted module name for a file path (a `src/` layout prefix is dropped) and whether it's a package."""
    parts = path[: -len(".py")].split("/")
    if parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts) or "__init__", is_package


def _resolve_relative(current: str, is_package: bool, level: int, target: str | None) -> str:
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def parse_module(path: str, source: str) -> Module:
    """What a module defines and imports (pure)."""
    name, is_package = module_name(path)
    lines = source.count("\n") + (0 if source.endswith("\n") or not source else 1)
    try:
        tree = parse_python(source, filename=path)
    except SyntaxError as exc:
        return Module(name, path, is_package, "", [], [], None, [], [], False, [], False, lines, str(exc))
    functions, classes, top_level, imports, own = [], [], [], [], []
    home = name.split(".")[0]
    all_names: list[str] | None = None
    has_version = has_main = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.append(node.name)
            top_level.append(node.name)
            own.append(node.name)
        elif isinstance(node, ast.ClassDef):
            classes.append(node.name)
            top_level.append(node.name)
            own.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    top_level.append(target.id)
                    own.append(target.id)
                    has_version |= target.id == "__version__"
                    if target.id == "__all__" and isinstance(node.value, ast.List | ast.Tuple):
                        all_names = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
        elif isinstance(node, ast.ImportFrom):
            module = (
                node.module
                if not node.level
                else _resolve_relative(name, is_package, node.level, node.module)
            )
            bound = [a.asname or a.name for a in node.names if a.name != "*"]
            top_level.extend(bound)
            if module and module.split(".")[0] == home:
                own.extend(bound)
            imports.append(module or "")
            imports.extend(f"{module}.{a.name}" for a in node.names if module)
        elif isinstance(node, ast.Import):
            imports.extend(a.name for a in node.names)
        elif (
            isinstance(node, ast.If)
            and "__name__" in ast.unparse(node.test)
            and "__main__" in ast.unparse(node.test)
        ):
            has_main = True
    # Imports inside functions count for the graph too (lazy imports are still dependencies).
    for node in _nested_statements(tree):
        if isinstance(node, ast.Import):
            imports.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = (
                node.module
                if not node.level
                else _resolve_relative(name, is_package, node.level, node.module)
            )
            imports.append(module or "")
    public = sorted({n for n in top_level if not n.startswith("_")})
    return Module(
        name, path, is_package, (ast.get_docstring(tree) or "").strip().split("\n")[0],
        sorted(n for n in functions if not n.startswith("_")), sorted(n for n in classes if not n.startswith("_")),
        all_names, public, sorted({n for n in own if not n.startswith("_")}), has_version, sorted({i for i in imports if i}), has_main, lines,
    )  # fmt: skip


_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def _nested_statements(tree: ast.Module):
    """Every statement below the top level. Imports are statements, so expressions (most of a
    tree's nodes) need not be visited: `ast.walk` over them was a fifth of the parse time."""
    stack = [
        child
        for node in tree.body
        for block in _BLOCKS
        for child in getattr(node, block, None) or ()
        if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case)
    ]
    while stack:
        node = stack.pop()
        yield node
        for block in _BLOCKS:
            children = getattr(node, block, None)
            if isinstance(children, list):
                stack.extend(
                    c for c in children if isinstance(c, ast.stmt | ast.excepthandler | ast.match_case)
                )


# What a module defines, by its path and source: the same tree is read again in one process
# (`collect` per implemented improvement, the docs step after the analysis) and its facts do not
# change. Bounded so a huge monorepo cannot hold every module twice.
_PARSED: OrderedDict[tuple[str, bytes], Module] = OrderedDict()
_PARSED_MAX = 20_000
_PARSED_LOCK = threading.Lock()


def parse_modules(sources: dict[str, bytes]) -> list[Module]:
    """`parse_module` of each path -> source, sorted by module name; a source seen before (same
    path, same bytes) is not parsed again. The modules returned may be shared with later calls:
    read them, do not change them."""
    modules = []
    for rel, data in sources.items():
        key = (rel, hashlib.blake2b(data, digest_size=16).digest())
        with _PARSED_LOCK:
            module = _PARSED.get(key)
            if module is not None:
                _PARSED.move_to_end(key)
        if module is None:
            module = parse_module(rel, data.decode("utf-8", errors="replace"))
            with _PARSED_LOCK:
                _PARSED[key] = module
                while len(_PARSED) > _PARSED_MAX:
                    _PARSED.popitem(last=False)
        modules.append(module)
    return sorted(modules, key=lambda m: m.name)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _read_setup_cfg(path: Path) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error:
        return {}
    return {s: dict(parser[s]) for s in parser.sections()}


def _requirements(repo: Path, files: list[str]) -> list[str]:
    """What the project's root requirements files say it needs to run: a development, test or docs
    file lists tools (schedule's requirements-dev.txt: Sphinx, black, mypy), not dependencies."""
    reqs = []
    for rel in files:
        if (
            "/" not in rel
            and rel.startswith("requirements")
            and rel.endswith(".txt")
            and not any(word in rel for word in ("dev", "test", "doc", "lint"))
        ):
            for line in (repo / rel).read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.split("#", 1)[0].strip()
                if line and not line.startswith("-"):
                    reqs.append(line)
    return sorted(set(reqs))


def is_bot(name: str, email: str) -> bool:
    """Automation identities (the pipeline's own, GitHub apps) are never the license holder."""
    lowered = f"{name} {email}".lower()
    return (
        "[bot]" in lowered
        or "repo-pilot" in lowered
        or "repo pilot" in lowered
        or "noreply@github.com" in email
    )


def rank_authors(log: str) -> tuple[list[str], int | None]:
    """Authors by number of commits (ties by name) and the year of the newest commit, from
    `git log --format=%an%x09%ae%x09%ad --date=format:%Y` output, bots left out (pure)."""
    counts: Counter[str] = Counter()
    years = []
    for line in log.splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or not parts[0].strip() or is_bot(parts[0], parts[1]):
            continue
        counts[parts[0].strip()] += 1
        if parts[2].strip().isdigit():
            years.append(int(parts[2]))
    return sorted(counts, key=lambda n: (-counts[n], n)), max(years) if years else None


def _authors(repo: Path) -> tuple[list[str], int | None]:
    if not (repo / ".git").exists():
        return [], None
    return rank_authors(git(repo, "log", "--format=%an%x09%ae%x09%ad", "--date=format:%Y", check=False))


def _read_source(path: str) -> tuple[bytes, str | None]:
    """A module's bytes, or why they are not read (`budget.skip_reason`'s rule and words): one open,
    a stat of the open file and one read — sniffing 8 KB and then opening again for the whole file
    was a third of reading 1,800 modules."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:
                return b"", f"too large: {size} bytes (limit {MAX_FILE_BYTES})"
            raw = fh.read()
    except OSError as exc:
        return b"", f"unreadable: {exc.strerror or exc}"
    return (b"", "binary") if b"\0" in raw[:SNIFF_BYTES] else (raw, None)


def collect(repo: Path) -> RepoFacts:
    """Read everything the rules engine needs from the working copy at `repo`."""
    repo = repo.resolve()
    if not repo.is_dir():
        from shared.ports.errors import StepError

        raise StepError(f"repository path {repo} is not a directory")
    skipped: dict[str, str] = {}
    files = list_files(repo, skipped)
    sources = {}
    for rel in files:
        if rel.endswith(".py"):
            raw, reason = _read_source(f"{repo}/{rel}")  # big and binary files cost no parse
            if reason:
                skipped[rel] = reason
            else:
                sources[rel] = raw
    pyproject = _read_toml(repo / "pyproject.toml") if "pyproject.toml" in files else {}
    setup_cfg = _read_setup_cfg(repo / "setup.cfg") if "setup.cfg" in files else {}
    kind = detect_project(repo, files)
    authors, year = _authors(repo)
    return RepoFacts(
        repo, kind.name, files, None, pyproject, setup_cfg,
        _requirements(repo, files), authors, year, skipped, kind.language, kind.languages, sources,
    )  # fmt: skip


def python_version(facts: RepoFacts) -> str:
    """The lowest Python the project supports (`requires-python`), else the running interpreter's."""
    import re

    match = re.search(r"3\.(\d+)", facts.requires_python or "")
    return f"3.{match.group(1)}" if match else f"{sys.version_info.major}.{sys.version_info.minor}"


def dependencies(facts: RepoFacts) -> list[str]:
    deps = list(facts.project.get("dependencies", []) or [])
    poetry = ((facts.pyproject.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
    deps.extend(f"{k} {v}" if isinstance(v, str) else k for k, v in poetry.items() if k != "python")
    install = facts.setup_cfg.get("options", {}).get("install_requires", "")
    deps.extend(line.strip() for line in install.splitlines() if line.strip())
    deps.extend(facts.requirements)
    return sorted(set(deps))


def entry_points(facts: RepoFacts) -> list[str]:
    """Console scripts from the metadata, `__main__` modules and modules with a main guard."""
    points = []
    for table in ("scripts", "gui-scripts"):
        for script, target in sorted((facts.project.get(table) or {}).items()):
            points.append(f"`{script}` → `{target}`")
    poetry_scripts = ((facts.pyproject.get("tool") or {}).get("poetry") or {}).get("scripts") or {}
    points.extend(f"`{s}` → `{t}`" for s, t in sorted(poetry_scripts.items()) if isinstance(t, str))
    console = facts.setup_cfg.get("options.entry_points", {}).get("console_scripts", "")
    for line in console.splitlines():
        if "=" in line:
            script, target = (p.strip() for p in line.split("=", 1))
            points.append(f"`{script}` → `{target}`")
    for m in facts.modules:
        if m.path.endswith("__main__.py"):
            points.append(f"`python -m {m.name.removesuffix('.__main__')}`")
        elif m.has_main_guard and not _is_test_module(m.path):
            points.append(f"`{m.path}` (runs as a script)")
    return points


def test_command(facts: RepoFacts) -> str:
    """How the project runs its tests: its own command (tox's, its Makefile's) when it has one (more-
    itertools runs unittest, not pytest), else pytest when it has tests, else an import."""
    own = _own_test_command(facts.root, set(facts.files))
    if own:
        return own
    return "python -m pytest" if facts.has_tests else f'python -c "import {_first_package(facts)}"'


def _own_test_command(root: Path, files: set[str]) -> str | None:
    """The first command of tox's `[testenv]` (its placeholders dropped), else `make test` when the
    Makefile has a `test` target, else None."""
    if "tox.ini" in files:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string((root / "tox.ini").read_text(encoding="utf-8"))
            commands = parser.get("testenv", "commands", fallback="")
        except (OSError, UnicodeDecodeError, configparser.Error):
            commands = ""
        for line in commands.splitlines():
            words = [w for w in line.replace("{envpython}", "python").split() if not w.startswith("{")]
            if words and not words[0].startswith("-"):
                return " ".join(words)
    if "Makefile" in files:
        try:
            makefile = (root / "Makefile").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if any(line.startswith("test:") for line in makefile.splitlines()):
            return "make test"
    return None


def _first_package(facts: RepoFacts) -> str:
    top = sorted({m.name.split(".")[0] for m in facts.modules if not _is_test_module(m.path)})
    return top[0] if top else facts.name.replace("-", "_")


_DEV_REQUIREMENTS = ("requirements-dev.txt", "requirements_dev.txt", "dev-requirements.txt", "requirements-test.txt",
                     "requirements_test.txt", "test-requirements.txt", "requirements/test.txt",
                     "requirements/tests.txt", "requirements/dev.txt", "requirements/development.txt")  # fmt: skip


def install_command(facts: RepoFacts) -> str:
    """How a contributor installs the project and what its tests need, from what the repository
    declares (a test extra, a development requirements file)."""
    extras = facts.project.get("optional-dependencies") or {}
    extra = next((e for e in ("test", "tests", "testing", "dev") if e in extras), None)
    dev = next((f for f in _DEV_REQUIREMENTS if f in facts.files), None)
    if "pyproject.toml" in facts.files or "setup.py" in facts.files:
        cmd = f'python -m pip install -e ".[{extra}]"' if extra else "python -m pip install -e ."
    elif "requirements.txt" in facts.files:
        cmd = "python -m pip install -r requirements.txt"
    else:
        return f"python -m pip install -r {dev}" if dev else "python -m pip install --upgrade pip"
    return f"{cmd} -r {dev}" if dev else cmd


def language_counts(files: list[str]) -> dict[str, int]:
    counts = Counter(_LANGUAGES.get(Path(f).suffix.lower(), "Other") for f in files)
    return dict(sorted(counts.items()))
