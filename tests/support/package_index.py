"""A local package index for tests: wheels served over 127.0.0.1 in the PEP 503 simple layout.

    with LocalIndex.of_installed(tmp_path, ["pytest"]) as index:
        env UV_INDEX_URL=index.url  →  `uv pip install pytest` installs from it, offline

Wheels are repacked from distributions installed in this interpreter (pure-Python ones, so any
platform accepts them), with their requirements followed, so the index holds a whole
installable set without any network.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.metadata as metadata
import re
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

from packaging.requirements import Requirement


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def repack_wheel(dist: metadata.Distribution, out_dir: Path) -> Path:
    """A py3-none-any wheel of an installed pure-Python distribution, with a fresh RECORD."""
    name, version = dist.metadata["Name"], dist.version
    wheel = out_dir / f"{normalize(name).replace('-', '_')}-{version}-py3-none-any.whl"
    record_name = None
    lines = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in dist.files or []:
            rel = str(file)
            if rel.startswith("..") or "__pycache__" in rel or rel.endswith((".pyc", "INSTALLER", "REQUESTED",
                                                                               "direct_url.json")):
                continue
            if rel.endswith(".dist-info/RECORD"):
                record_name = rel
                continue
            data = Path(file.locate()).read_bytes()
            zf.writestr(rel, data)
            lines.append(_record_line(rel, data))
        assert record_name, f"{name} has no RECORD"
        zf.writestr(record_name, "\n".join([*lines, f"{record_name},,"]) + "\n")
    return wheel


def requirement_closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions `names` need on this interpreter (markers evaluated here)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = normalize(todo.pop())
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class LocalIndex:
    """`root/simple/<project>/index.html` pages linking to `root/files/*.whl`, served on 127.0.0.1."""

    def __init__(self, root: Path):
        self.root = root
        self.server: ThreadingHTTPServer | None = None
        self.requests: list[str] = []

    @classmethod
    def of_installed(cls, root: Path, names: list[str]) -> Self:
        index = cls(root)
        files = root / "files"
        files.mkdir(parents=True, exist_ok=True)
        projects: dict[str, list[Path]] = {}
        for dist in requirement_closure(names):
            projects.setdefault(normalize(dist.metadata["Name"]), []).append(repack_wheel(dist, files))
        (root / "simple").mkdir(exist_ok=True)
        links = []
        for project, wheels in sorted(projects.items()):
            page = root / "simple" / project
            page.mkdir(exist_ok=True)
            anchors = "".join(f'<a href="../../files/{html.escape(w.name)}">{html.escape(w.name)}</a>\n'
                              for w in wheels)
            (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{anchors}</body></html>\n")
            links.append(f'<a href="{project}/">{project}</a>\n')
        (root / "simple" / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "".join(links)
                                                    + "</body></html>\n")
        return index

    @property
    def url(self) -> str:
        assert self.server is not None, "start the index first"
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def __enter__(self) -> Self:
        requests = self.requests

        class Handler(_Quiet):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                requests.append(self.path)
                super().do_GET()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(self.root)))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
