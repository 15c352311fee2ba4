"""The GitHub forge: push over HTTPS with a token, pull requests through the REST API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from shared.adapters.forge_push import publish_branch
from shared.adapters.git import git
from shared.ports.errors import StepError
from shared.ports.forge import MergeRequest

import httpx2 as httpx  # openai's HTTP client (its 2.x line ships as `httpx2`)


class GitHubForge:
    """GitHub: push over HTTPS with the token, pull requests through the REST API.

    `push_url` defaults to `https://x-access-token:TOKEN@github.com/owner/name.git`; tests point it
    (and `api_url`) at local stand-ins. Error messages never carry the token.
    """

    name = "github"

    def __init__(
        self, token: str, repo: str, api_url: str = "https://api.github.com", push_url: str | None = None
    ):
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            raise ValueError(f"GitHub repository must be 'owner/name', got {repo!r}")
        self.token = token
        self.repo = repo
        self.api_url = api_url.rstrip("/")
        self.push_url = push_url or f"https://x-access-token:{token}@github.com/{repo}.git"

    def _client(self) -> httpx.AsyncClient:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "repo-pilot",
        }
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=30)

    async def _call(self, method: str, path: str, ok=(200, 201), **kwargs) -> httpx.Response:
        async with self._client() as client:
            response = await client.request(method, f"/repos/{self.repo}{path}", **kwargs)
        if response.status_code in (401, 403, 404) and response.status_code not in ok:
            raise StepError(
                f"GitHub refused {method} {path} ({response.status_code}): {_message(response)}",
                hint="Check GITHUB_TOKEN: it needs contents and pull-request write access to " + self.repo,
            )
        return response

    async def publish(self, repo: Path, branch: str) -> bool:
        """Push the branch to GitHub; False when it is already there at this commit."""
        try:
            return await asyncio.to_thread(publish_branch, Path(repo), self.push_url, branch)
        except StepError as exc:
            raise StepError(exc.message.replace(self.token, "***"), exc.hint) from None

    async def find_request(self, branch: str) -> MergeRequest | None:
        """The newest pull request whose head is `branch` (any state), or None."""
        owner = self.repo.split("/")[0]
        response = await self._call("GET", "/pulls", params={"head": f"{owner}:{branch}", "state": "all"})
        pulls = [p for p in response.json() if p.get("head", {}).get("ref") == branch]
        return _pull(pulls[0]) if pulls else None

    async def open_request(self, repo: Path, branch: str, title: str, body: str) -> MergeRequest:
        """The open (or merged) pull request for `branch`; created only when there is none."""
        existing = await self.find_request(branch)
        if existing and existing.state in ("open", "merged"):
            return existing
        base = (await self._call("GET", "")).json()["default_branch"]
        response = await self._call(
            "POST", "/pulls", json={"title": title, "head": branch, "base": base, "body": body}
        )
        if response.status_code == 201:
            return _pull(response.json())
        existing = await self.find_request(branch)  # 422: another replica opened it meanwhile
        if existing and existing.state == "open":
            return existing
        raise StepError(
            f"GitHub did not open the pull request ({response.status_code}): {_message(response)}",
            hint="Check that the branch was published and differs from the default branch.",
        )

    async def merge(self, request: MergeRequest) -> str:
        """Merge the pull request (merge commit); an already merged one returns its merge sha."""
        current = _pull((await self._call("GET", f"/pulls/{request.id}")).json())
        if current.state == "merged":
            return current.merge_sha
        response = await self._call("PUT", f"/pulls/{request.id}/merge", json={"merge_method": "merge"})
        if response.status_code == 200 and response.json().get("merged"):
            return response.json()["sha"]
        raise StepError(
            f"GitHub did not merge pull request #{request.id} ({response.status_code}): {_message(response)}",
            hint="Look at the pull request: it may conflict, need reviews, or have changed meanwhile.",
        )


def _message(response) -> str:
    try:
        return str(response.json().get("message", ""))[:500]
    except ValueError:
        return response.text[:500]


def _pull(data: dict[str, Any]) -> MergeRequest:
    merged = bool(data.get("merged_at") or data.get("merged"))
    return MergeRequest(
        id=str(data["number"]),
        url=data.get("html_url", ""),
        branch=data["head"]["ref"],
        state="merged" if merged else data.get("state", "open"),
        # For an open PR this is GitHub's test merge, not a merge: only trusted once merged.
        merge_sha=data.get("merge_commit_sha") if merged else None,
        title=data.get("title", ""),
        base=data.get("base", {}).get("ref", ""),
    )


# -- choosing ----------------------------------------------------------------------------------------


def github_repo_of(target: Path | str) -> str | None:
    """`owner/name` from a GitHub URL, or from the `origin` remote of a local repository."""
    text = str(target)
    if not re.search(r"github\.com[:/]", text) and Path(text).is_dir():
        text = git(Path(text), "remote", "get-url", "origin", check=False)
    match = re.search(r"github\.com[:/]+([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", text)
    return f"{match.group(1)}/{match.group(2)}" if match else None


