"""What kind of project a repository is: its languages, its ecosystem, and its real name.

Pure functions over the file list and the manifests' text, so every writer of files into a
user's repository (templates, CI, Dependabot) names and targets the project the same way.
The name comes from the project's own manifest (package.json, Cargo.toml, go.mod, pyproject /
setup.cfg), else from the repository's directory: never from an internal working-copy name.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Language -> (source suffixes, manifest files that make it the project's ecosystem).
LANGUAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "python": ((".py", ".pyi"), ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt")),
    "javascript": ((".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts"), ("package.json",)),
    "rust": ((".rs",), ("Cargo.toml",)),
    "go": ((".go",), ("go.mod",)),
}
# Dependabot's `package-ecosystem` for each language.
DEPENDABOT = {"python": "pip", "javascript": "npm", "rust": "cargo", "go": "gomod"}
_INTERNAL_NAME = re.compile(r"^(run|gen)-[0-9a-f]{8}-|-(imp\d+|test-(base|head)|merge|docs|analyze)$")


@dataclass(frozen=True)
class Project:
    name: str
    language: str | None  # the primary ecosystem: python, javascript, rust, go, or None (none we know)
    languages: list[str] = field(default_factory=list)  # every one found, primary first
    typescript: bool = False

    @property
    def dependabot_ecosystem(self) -> str | None:
        return DEPENDABOT.get(self.language or "")


def _suffix(rel: str) -> str:
    """`PurePosixPath(rel).suffix` without building a path: a path per file was a fifth of `facts.collect`."""
    name = rel.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def source_counts(files: list[str]) -> Counter[str]:
    """Source files per known language (pure)."""
    counts: Counter[str] = Counter()
    for rel in files:
        suffix = _suffix(rel).lower()
        for lang, (suffixes, _) in LANGUAGES.items():
            if suffix in suffixes:
                counts[lang] += 1
    return counts


def detect_languages(files: list[str]) -> list[str]:
    """Known languages of the repository, primary first: a root manifest weighs more than any
    number of files (a Rust crate with Python helper scripts is a Rust project) (pure)."""
    counts = source_counts(files)
    root = {f for f in files if "/" not in f}
    manifests = {lang for lang, (_, names) in LANGUAGES.items() if root & set(names)}
    found = set(counts) | manifests
    return sorted(found, key=lambda lang: (lang not in manifests, -counts[lang], lang))


def is_internal_name(name: str) -> bool:
    """True for Repo Pilot's own working-copy names (`run-<uuid>…`, `…-imp3`)."""
    return bool(_INTERNAL_NAME.search(name))


def manifest_name(manifests: dict[str, str]) -> str | None:
    """The project's name from its manifests (file name -> text), in a fixed order (pure)."""
    text = manifests.get("package.json")
    if text:
        try:
            name = json.loads(text).get("name")
        except (ValueError, AttributeError):
            name = None
        if isinstance(name, str) and name.strip():
            return name.strip()
    for file, path in (
        ("Cargo.toml", ("package", "name")),
        ("pyproject.toml", ("project", "name")),
        ("pyproject.toml", ("tool", "poetry", "name")),
    ):
        if manifests.get(file):
            try:
                value = tomllib.loads(manifests[file])
            except tomllib.TOMLDecodeError:
                continue
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str) and value.strip():
                return value.strip()
    go_mod = manifests.get("go.mod")
    if go_mod:
        match = re.search(r"^module\s+(\S+)", go_mod, re.MULTILINE)
        if match:
            return re.sub(r"/v\d+$", "", match.group(1)).rsplit("/", 1)[-1]
    setup_cfg = manifests.get("setup.cfg")
    if setup_cfg:
        match = re.search(r"^\[metadata\][^\[]*?^name\s*=\s*(\S+)", setup_cfg, re.MULTILINE | re.DOTALL)
        if match:
            return match.group(1)
    return None


def detect(root: Path, files: list[str]) -> Project:
    """The project at `root` (a working copy) with its `files` (relative paths)."""
    wanted = ("package.json", "Cargo.toml", "pyproject.toml", "go.mod", "setup.cfg")
    manifests = {}
    for name in wanted:
        if name in files:
            try:
                manifests[name] = (Path(root) / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                pass
    languages = detect_languages(files)
    name = manifest_name(manifests) or Path(root).name
    if is_internal_name(name):  # a copy made outside the workspace's naming; never let it leak
        name = "project"
    typescript = any(_suffix(f) in (".ts", ".tsx", ".mts", ".cts") for f in files)
    return Project(name, languages[0] if languages else None, languages, typescript)


@dataclass(frozen=True)
class Commands:
    install: str
    test: str
    runtime: str  # one sentence: what a contributor needs installed
    setup: str  # the console lines that set up a working copy


def npm_test_script(package_json: str) -> str | None:
    """The package's own `scripts.test`, unless it is npm's "no test specified" placeholder (pure)."""
    try:
        script = (json.loads(package_json).get("scripts") or {}).get("test")
    except (ValueError, AttributeError):
        return None
    if not isinstance(script, str) or not script.strip() or "no test specified" in script:
        return None
    return script


def ecosystem_commands(language: str, files: list[str], package_json: str = "") -> Commands | None:
    """How contributors install and test a non-Python project (Python's come from its metadata,
    engines/rules/facts.py); None for a language we have no commands for (pure)."""
    if language == "javascript":
        install = "npm ci" if "package-lock.json" in files else "npm install"
        test = "npm test" if npm_test_script(package_json) else "node --test"
        return Commands(install, test, "You need Node.js (a current LTS release) and npm.", install)
    if language == "rust":
        return Commands(
            "cargo build", "cargo test", "You need a stable Rust toolchain (rustup, cargo).", "cargo build"
        )
    if language == "go":
        return Commands(
            "go mod download", "go test ./...", "You need Go (the version go.mod names).", "go mod download"
        )
    return None
