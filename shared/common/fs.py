"""The one door for writing into a user's working copy (and other trusted roots such as run logs).

`write_inside(root, rel, data)` refuses anything that would land outside `root`: absolute paths,
`..`, `.git`, and symlinks that lead out (a symlinked parent directory, a dangling link whose
target is elsewhere). The path is first resolved and checked (`resolve_inside`), then walked one
component at a time with `O_NOFOLLOW` relative to the directory opened before it, so a symlink
swapped in between the check and the write is refused too, not followed.

It lives in `common` (not `adapters`) because model edits (`shared/policy/edits.py`) sit below the
adapters and must use the same door.
"""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    """A path that would read or write outside the repository, or inside `.git`."""


_DRIVE = re.compile(r"^[A-Za-z]:")


def resolve_inside(repo: Path, rel: str) -> Path:
    """The real path of `rel` inside `repo`, or UnsafePath when it is empty, absolute, uses `..`,
    touches `.git`, or resolves (through symlinks) outside the repository or into its `.git`.

    A symlink that stays inside the repository is followed (the real path is returned)."""
    if not rel or not rel.strip() or "\x00" in rel:
        raise UnsafePath(f"unsafe path {rel!r}: empty or contains a NUL byte")
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or _DRIVE.match(rel):
        raise UnsafePath(f"unsafe path {rel!r}: absolute paths are not allowed, use a path relative to the repository")
    if ".." in pure.parts:
        raise UnsafePath(f"unsafe path {rel!r}: '..' is not allowed")
    if any(part.lower() == ".git" for part in pure.parts):
        raise UnsafePath(f"unsafe path {rel!r}: writing inside .git is not allowed")
    root = Path(repo).resolve()
    target = (root / pure).resolve()
    if not target.is_relative_to(root):
        raise UnsafePath(f"unsafe path {rel!r}: resolves outside the repository (a symlink points to {target})")
    if target.relative_to(root).parts[:1] == (".git",):
        raise UnsafePath(f"unsafe path {rel!r}: resolves inside .git through a symlink")
    if target == root:
        raise UnsafePath(f"unsafe path {rel!r}: names the repository root, not a file")
    return target


def is_inside(repo: Path, rel: str) -> bool:
    """`rel` passes `resolve_inside` (a file a tool or a model may touch)."""
    try:
        resolve_inside(repo, rel)
    except UnsafePath:
        return False
    return True


def _open_dir(name: str, parent_fd: int, shown: str, create: bool) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise
        try:
            os.mkdir(name, 0o755, dir_fd=parent_fd)
        except FileExistsError:
            pass
        return _open_dir(name, parent_fd, shown, create=False)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"unsafe path {shown!r}: a component is a symlink or not a directory") from None
        raise


def write_inside(root: Path, rel: str, data: str | bytes, *, exclusive: bool = False) -> Path:
    """Write `data` (str is UTF-8 encoded) to `rel` inside `root`, creating parent directories.

    Returns the real path written. Raises UnsafePath, writing nothing, when `rel` escapes `root`
    in any way (see module docstring); with `exclusive`, FileExistsError when the file exists.
    """
    target = resolve_inside(root, rel)
    real_root = Path(root).resolve()
    parts = target.relative_to(real_root).parts
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts[:-1]:
            next_fd = _open_dir(part, fd, rel, create=True)
            os.close(fd)
            fd = next_fd
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        flags |= os.O_EXCL if exclusive else os.O_TRUNC
        try:
            out = os.open(parts[-1], flags, 0o644, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"unsafe path {rel!r}: the file is a symlink") from None
            raise
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(out, view):]
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return target


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(value: object, limit: int = 200) -> str:
    """`value` as text fit for one line of a generated file: control characters (newlines
    included) become spaces, format characters (bidi overrides) are dropped, and it is cut to
    `limit` characters. For names and other metadata taken from the target repository."""
    text = _CONTROL.sub(" ", str(value))
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
