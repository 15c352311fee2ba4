"""Which checks a project runs, read from its own configuration (pure over the repository's files).

Detected: ruff (`[tool.ruff]`, ruff.toml), ruff-format and black (their config tables), isort,
flake8, mypy and pyright, eslint and prettier for JavaScript, checkers its CI, tox, nox or Makefile
run by name, and `.pre-commit-config.yaml`: a remote hook whose tool we run ourselves (ruff, black,
isort, flake8, mypy) counts as that tool; `repo: local` / `meta` hooks as `pre-commit`; any other
remote hook needs the network and is listed as not runnable. Running them is project_checks.py.
"""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from pathlib import Path

import yaml

from shared.adapters.analyzers import ruff_config

# Remote pre-commit hooks whose tool is installed here: run as that tool under the project's config.
NATIVE_HOOKS = {"ruff": "ruff", "ruff-check": "ruff", "ruff-format": "ruff-format", "black": "black",
                "isort": "isort", "flake8": "flake8", "mypy": "mypy"}  # fmt: skip
PY = (".py", ".pyi")
JS = (".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx")
FORMATTERS = ("ruff-format", "black")


def read_file(repo: Path, rel: str) -> str:
    """A text file of the repository, or an empty string when it is missing or not UTF-8."""
    try:
        return (repo / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _toml_tool(repo: Path) -> dict:
    try:
        return tomllib.loads(read_file(repo, "pyproject.toml")).get("tool") or {}
    except tomllib.TOMLDecodeError:
        return {}


def _ini_sections(repo: Path, rel: str) -> set[str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(read_file(repo, rel))
    except configparser.Error:
        return set()
    return set(parser.sections())


def pre_commit_hooks(repo: Path) -> list[tuple[str, str]]:
    """(repo, hook id) of every hook in `.pre-commit-config.yaml`; [] without one. A config that
    is not valid YAML raises ValueError (pre-commit itself would refuse it)."""
    text = read_file(repo, ".pre-commit-config.yaml")
    if not text:
        return []
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f".pre-commit-config.yaml is not valid YAML: {str(exc).splitlines()[0]}") from None
    return [(str(r.get("repo", "")), str(h.get("id", ""))) for r in data.get("repos") or [] if isinstance(r, dict)
            for h in r.get("hooks") or [] if isinstance(h, dict)]  # fmt: skip


_COMMAND = re.compile(
    r"(?:^|[\s`'\"=;&|(])(?:python3? -m )?(black|isort|flake8|mypy|pyright)\b(?![-.\w])", re.MULTILINE
)


def commands_run(repo: Path) -> set[str]:
    """The checkers the project's CI, tox, nox or Makefile run by name (e.g. `black --check .` in a
    tox env), though no config table names them (pure over the files)."""
    places = [
        "tox.ini",
        "Makefile",
        "noxfile.py",
        *sorted(p.relative_to(repo).as_posix() for p in (repo / ".github" / "workflows").glob("*.y*ml")),
    ]
    return {m.group(1) for rel in places for m in _COMMAND.finditer(read_file(repo, rel))}


def detect(repo: Path) -> tuple[list[str], dict[str, str]]:
    """(the checks the project configures, in the order they run, the pre-commit hooks that cannot
    run here with why). Pure over the repository's files."""
    tool = _toml_tool(repo)
    package = read_file(repo, "package.json")
    try:
        package_json = json.loads(package) if package else {}
    except ValueError:
        package_json = {}
    files = {p.name for p in repo.iterdir()} if repo.is_dir() else set()
    ini = {name: _ini_sections(repo, name) for name in ("setup.cfg", "tox.ini", ".flake8", ".isort.cfg", "mypy.ini")
           if name in files}  # fmt: skip
    sections = set().union(*ini.values()) if ini else set()
    found: set[str] = set()
    config = ruff_config(repo)
    if config is not None:
        found.add("ruff")
        if "format" in config:
            found.add("ruff-format")
    if "black" in tool:
        found.add("black")
    if (
        "isort" in tool
        or ".isort.cfg" in files
        or "isort" in sections
        or "settings" in ini.get(".isort.cfg", ())
    ):
        found.add("isort")
    if ".flake8" in files or "flake8" in sections:
        found.add("flake8")
    if "mypy" in tool or {"mypy.ini", ".mypy.ini"} & files or "mypy" in sections:
        found.add("mypy")
    if "pyright" in tool or "pyrightconfig.json" in files:
        found.add("pyright")
    if any(n.startswith((".eslintrc", "eslint.config.")) for n in files) or "eslintConfig" in package_json:
        found.add("eslint")
    if any(n.startswith((".prettierrc", "prettier.config.")) for n in files) or "prettier" in package_json:
        found.add("prettier")
    found |= commands_run(repo)
    skipped: dict[str, str] = {}
    for source, hook in pre_commit_hooks(repo):
        if source in ("local", "meta"):
            found.add("pre-commit")
        elif hook in NATIVE_HOOKS:
            found.add(NATIVE_HOOKS[hook])
        else:
            skipped[f"pre-commit:{hook}"] = "needs network"
    order = ("ruff", "isort", "ruff-format", "black", "flake8", "mypy", "pyright", "eslint", "prettier",
             "pre-commit")  # fmt: skip
    return [t for t in order if t in found], skipped


# Widths projects settle on (pycodestyle's 79, black's 88, …): a project without a configured limit
# keeps the smallest one that nearly all of its lines fit.
WIDTHS = (79, 88, 99, 120)
CONVENTION = 0.99  # the share of a project's lines a width must hold to be its convention
MAX_SAMPLED = 2000  # Python files read to find the convention


def _int(value: object) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def configured_line_length(repo: Path) -> int | None:
    """The strictest line length the project's configured checkers enforce (ruff, black, flake8,
    pycodestyle, each with its own default when configured without one), or None."""
    limits: list[int | None] = []
    config = ruff_config(repo)
    if config is not None:
        limits.append(_int(config.get("line-length", 88)))
    black = _toml_tool(repo).get("black")
    if isinstance(black, dict):
        limits.append(_int(black.get("line-length", black.get("line_length", 88))))
    for rel in ("setup.cfg", "tox.ini", ".flake8"):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(read_file(repo, rel))
        except configparser.Error:
            continue
        for section, default in (("flake8", 79), ("pycodestyle", 79)):
            if parser.has_section(section):
                value = parser[section].get(
                    "max-line-length", parser[section].get("max_line_length", default)
                )
                limits.append(_int(value))
    known = [n for n in limits if n]
    return min(known) if known else None


def line_length(repo: Path, python_files: list[str]) -> int | None:
    """The longest line the project accepts: what its checkers are configured to enforce, else the
    convention its code keeps (the smallest of WIDTHS that CONVENTION of its lines fit; toolz keeps
    79 columns with no checker configured), else None (no convention)."""
    configured = configured_line_length(repo)
    if configured:
        return configured
    lengths: list[int] = []
    for rel in python_files[:MAX_SAMPLED]:
        lengths += [len(line) for line in read_file(repo, rel).splitlines()]
    if not lengths:
        return None
    for width in WIDTHS:
        if sum(n <= width for n in lengths) >= CONVENTION * len(lengths):
            return width
    return None
