"""A stand-in for the few GitHub endpoints GitHubForge uses (we cannot reach GitHub from here).

A real HTTP server on 127.0.0.1 serving the REST shapes of `GET /repos/{o}/{n}`, `GET/POST
/repos/{o}/{n}/pulls`, `GET /repos/{o}/{n}/pulls/{number}` and `PUT …/pulls/{number}/merge`,
with a bare git repository as the push remote. Merging really merges (`--no-ff`) inside the
bare repository, so tests can count merge commits. `merge_calls` counts merge attempts.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlparse

from shared.adapters.git import git


class GitHubStub:
    def __init__(self, bare_repo: Path, owner_repo: str = "octo/demo", token: str = "stub-token"):
        self.bare = Path(bare_repo)
        self.repo = owner_repo
        self.token = token
        self.pulls: dict[int, dict] = {}
        self.merge_calls = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def api_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- behaviour ----------------------------------------------------------------------------

    def _branch_sha(self, branch: str) -> str | None:
        return git(self.bare, "rev-parse", "-q", "--verify", f"refs/heads/{branch}", check=False) or None

    def _create(self, body: dict) -> tuple[int, dict]:
        head, base = body.get("head", ""), body.get("base", "")
        if not self._branch_sha(head):
            return 422, {"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]}
        if any(p["head"]["ref"] == head and p["state"] == "open" for p in self.pulls.values()):
            return 422, {"message": f"A pull request already exists for {self.repo.split('/')[0]}:{head}."}
        number = len(self.pulls) + 1
        self.pulls[number] = {
            "number": number,
            "html_url": f"https://github.example/{self.repo}/pull/{number}",
            "state": "open",
            "title": body.get("title", ""),
            "body": body.get("body", ""),
            "head": {"ref": head, "sha": self._branch_sha(head)},
            "base": {"ref": base},
            "merged": False,
            "merged_at": None,
            "merge_commit_sha": "0" * 40,  # GitHub's test merge: meaningless until merged
        }
        return 201, self.pulls[number]

    def _merge(self, number: int) -> tuple[int, dict]:
        self.merge_calls += 1
        pull = self.pulls.get(number)
        if pull is None:
            return 404, {"message": "Not Found"}
        if pull["merged"]:
            return 405, {"message": "Pull Request is not mergeable"}
        work = Path(tempfile.mkdtemp(prefix="github-stub-merge-"))
        try:
            git(work, "clone", "--quiet", "--branch", pull["base"]["ref"], str(self.bare), "c")
            git(work / "c", "fetch", "--quiet", "origin", pull["head"]["ref"])
            git(
                work / "c",
                "merge",
                "--no-ff",
                "--no-edit",
                "-m",
                f"Merge pull request #{number}",
                "FETCH_HEAD",
            )
            git(work / "c", "push", "--quiet", "origin", f"HEAD:refs/heads/{pull['base']['ref']}")
            sha = git(work / "c", "rev-parse", "HEAD")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        pull.update(state="closed", merged=True, merged_at="2026-01-01T00:00:00Z", merge_commit_sha=sha)
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    def _route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, object]:
        prefix = f"/repos/{self.repo}"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}
        rest = path[len(prefix) :]
        if method == "GET" and rest == "":
            return 200, {"full_name": self.repo, "default_branch": "main"}
        if rest == "/pulls" and method == "GET":
            owner_head = query.get("head", [""])[0]
            state = query.get("state", ["open"])[0]
            found = [
                p
                for p in sorted(self.pulls.values(), key=lambda p: -p["number"])
                if (not owner_head or f"{self.repo.split('/')[0]}:{p['head']['ref']}" == owner_head)
                and (state == "all" or p["state"] == state)
            ]
            return 200, found
        if rest == "/pulls" and method == "POST":
            return self._create(body)
        match = re.fullmatch(r"/pulls/(\d+)(/merge)?", rest)
        if match and method == "GET" and not match.group(2):
            pull = self.pulls.get(int(match.group(1)))
            return (200, pull) if pull else (404, {"message": "Not Found"})
        if match and method == "PUT" and match.group(2):
            return self._merge(int(match.group(1)))
        return 404, {"message": "Not Found"}

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                if self.headers.get("Authorization") != f"Bearer {stub.token}":
                    status, payload = 401, {"message": "Bad credentials"}
                else:
                    with stub._lock:
                        status, payload = stub._route(self.command, url.path, parse_qs(url.query), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        return Handler
