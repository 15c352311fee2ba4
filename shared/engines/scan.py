"""What of a repository a model gets to read: a prioritised, budgeted, secret-free scan.

Budgets keep prompts bounded (8,000 characters per file, 60,000 in all by default). Files
come in priority order so the budget goes to what explains a project first: README, then
packaging and build files, then entry points, then source, then tests, then the rest.
Never read: `.git`, virtualenvs, `node_modules`, caches and build output, binaries, and
anything that looks like a secret (`.env`, keys, credentials) — its path is not even listed.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import translate
from pathlib import Path

from shared.common.budget import MAX_FILE_BYTES, SNIFF_BYTES
from shared.policy.docs import own_docs

PER_FILE_CHARS = 8_000
TOTAL_CHARS = 60_000
MAX_LISTED = 400

SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "build",
    "dist",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".eggs",
    "site-packages",
    "target",
    ".next",
    "coverage",
    "htmlcov",
    ".idea",
    ".gradle",
}
SECRET_PATTERNS = (
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "credentials*",
    "*.p12",
    "*.pfx",
    ".netrc",
    ".pypirc",
    "*.keystore",
    "secrets.*",
)
BINARY_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".bmp",
    ".ico",
    ".webp",
    ".pdf",
    ".zip",
    ".gz",
    ".tgz",
    ".bz2",
    ".xz",
    ".tar",
    ".whl",
    ".egg",
    ".so",
    ".dll",
    ".dylib",
    ".exe",
    ".bin",
    ".pyc",
    ".pyo",
    ".class",
    ".jar",
    ".o",
    ".a",
    ".woff",
    ".woff2",
    ".ttf",
    ".otf",
    ".eot",
    ".mp3",
    ".mp4",
    ".mov",
    ".avi",
    ".sqlite",
    ".db",
    ".parquet",
    ".pkl",
    ".npy",
    ".npz",
    ".lock",
}
BUILD_FILES = {
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
    "package.json",
    "Cargo.toml",
    "go.mod",
    "Makefile",
    "Dockerfile",
    "docker-compose.yml",
    "compose.yaml",
    "tox.ini",
    "pom.xml",
    "build.gradle",
}
ENTRY_POINTS = {"__main__.py", "main.py", "cli.py", "app.py", "manage.py", "wsgi.py", "asgi.py", "server.py"}
SOURCE_SUFFIXES = {
    ".py",
    ".js",
    ".ts",
    ".tsx",
    ".jsx",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".rb",
    ".php",
    ".c",
    ".h",
    ".cpp",
    ".hpp",
    ".cs",
    ".swift",
    ".scala",
    ".sh",
    ".sql",
}


@dataclass(frozen=True)
class ScannedFile:
    path: str
    content: str
    size: int  # characters in the whole file
    truncated: bool


@dataclass
class RepoScan:
    files: list[ScannedFile] = field(default_factory=list)  # what the model reads, in priority order
    listing: list[str] = field(default_factory=list)  # every readable path (capped), sorted
    stats: dict = field(default_factory=dict)


# One compiled pattern for all: fnmatch per pattern per file was a tenth of a large scan.
_SECRET = re.compile("|".join(translate(pattern) for pattern in SECRET_PATTERNS))


def is_secret(name: str) -> bool:
    return _SECRET.match(name.lower()) is not None


def _suffix(name: str) -> str:
    """`PurePath(name).suffix` without building a path (a Path per file was a fifth of a large scan)."""
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def priority(rel: str) -> int:
    """Lower reads first: README, build files, entry points, source, tests, the rest."""
    name = rel.rsplit("/", 1)[-1]
    parts = rel.lower().split("/")
    if name.lower().startswith("readme"):
        return 0
    if name in BUILD_FILES or name.startswith("requirements"):
        return 1
    if name in ENTRY_POINTS:
        return 2
    is_test = (
        any(p in ("tests", "test") for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test.py")
    )
    if _suffix(name) in SOURCE_SUFFIXES:
        return 4 if is_test else 3
    return 5


def _read_text(path: str) -> str | None:
    """The file's text, or None for a binary, undecodable or unreadable one (size is checked before)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    if b"\x00" in raw[:SNIFF_BYTES]:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _walk(root: str, skipped: Counter[str]) -> list[tuple[str, str]]:
    """(relative path, path) of every file worth reading under `root`; what is left out is counted
    in `skipped`. os.scandir, whose entries carry their type and stat, rather than os.walk and a
    Path per file: pathlib's parsing was most of the walk on a 2,400-file repository."""
    candidates: list[tuple[str, str]] = []
    pending = [("", root)]
    while pending:
        rel_dir, here = pending.pop()
        try:
            with os.scandir(here) as entries:
                listed = list(entries)
        except OSError:
            continue
        for entry in listed:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            # is_dir follows a symlink, as os.walk does: a linked directory is counted as skipped below.
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if (
                    name in SKIP_DIRS
                    or name.endswith(".egg-info")
                    or entry.is_symlink()
                    or os.path.exists(os.path.join(entry.path, "pyvenv.cfg"))
                ):
                    skipped["directories"] += 1
                else:
                    pending.append((rel, entry.path))
            elif entry.is_symlink():
                skipped["symlinks"] += 1
            elif is_secret(name):
                skipped["secrets"] += 1
            elif _suffix(name).lower() in BINARY_SUFFIXES:
                skipped["binary"] += 1
            elif _too_large(entry):
                skipped["too_large"] += 1
            else:
                candidates.append((rel, entry.path))
    return candidates


def _too_large(entry: os.DirEntry) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_size > MAX_FILE_BYTES
    except OSError:
        return True


def scan_repo(repo: Path, per_file: int = PER_FILE_CHARS, total: int = TOTAL_CHARS) -> RepoScan:
    """Read `repo` within the budgets; symlinks are not followed. Stats count what was skipped and why."""
    skipped: Counter[str] = Counter()
    candidates = _walk(str(repo.resolve()), skipped)
    candidates.sort(key=lambda c: (priority(c[0]), c[0].count("/"), c[0]))
    scan = RepoScan()
    left = total
    suffixes: Counter[str] = Counter()
    for rel, path in candidates:
        text = _read_text(path)
        if text is None:
            skipped["binary"] += 1
            continue
        scan.listing.append(rel)
        suffixes[_suffix(rel.rsplit("/", 1)[-1]) or rel.rsplit("/", 1)[-1]] += 1
        if left <= 0:
            continue
        budget = min(per_file, left)
        piece = text[:budget]
        scan.files.append(ScannedFile(rel, piece, len(text), truncated=len(text) > budget))
        left -= len(piece)
    scan.stats = {
        "files": len(scan.listing),
        "files_read": len(scan.files),
        "files_truncated": sum(f.truncated for f in scan.files),
        "chars_read": total - left,
        "skipped": dict(skipped),
        "by_suffix": dict(suffixes.most_common(10)),
        "own_docs": own_docs(scan.listing),  # before the listing is capped
    }
    scan.listing = sorted(scan.listing)[:MAX_LISTED]
    return scan


def render_scan(scan: RepoScan) -> str:
    """The scan as prompt text: the listing, then each file in a fenced block."""
    out = ["# Files in the repository", *scan.listing]
    if len(scan.listing) >= MAX_LISTED:
        out.append(f"(listing capped at {MAX_LISTED} paths)")
    for f in scan.files:
        note = f" (first {len(f.content)} of {f.size} characters)" if f.truncated else ""
        out += ["", f"## {f.path}{note}", "```", f.content, "```"]
    return "\n".join(out)
