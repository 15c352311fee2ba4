"""What we know about one model endpoint, shared by every run a process handles.

- **Structured output.** How to ask for JSON: OpenAI `json_schema`, a forced tool call, vLLM
  guided decoding, Ollama `format`, then `json_object`, then plain prompting. The first mode is
  configured (`REPO_PILOT_LLM_STRUCTURED`) or detected (`json_schema`, which the common servers take); a mode the server refuses
  (HTTP 400 or 422, or a 500 naming the option, as llama-cpp-python's server answers) is dropped
  for the rest of the process and the next one is tried at once. `json_object` carries the schema
  too, which llama.cpp's servers enforce with a grammar.
- **Concurrency.** At most `limit` requests in flight (`REPO_PILOT_LLM_CONCURRENCY`; local
  servers often serve one request at a time). A 429 halves the limit (never below 1), so a
  server that refuses parallel requests is soon asked one at a time. `running` and `waiting`
  are what the live view shows.
- **Answer cap.** The answer's token cap goes as `max_completion_tokens` to OpenAI and
  `max_tokens` elsewhere; a server that refuses it is asked without one from then on.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

MODES = ("json_schema", "tools", "guided", "ollama_format", "json_object", "plain")
FALLBACKS = ("json_object", "plain")
OPENAI_URL = "https://api.openai.com/v1"
TOOL_NAME = "answer"

_endpoints: dict[str, Endpoint] = {}


def is_openai(base_url: str | None) -> bool:
    return not base_url or urlsplit(base_url).hostname == "api.openai.com"


def is_local(base_url: str | None) -> bool:
    """A server on this machine or the local network (Ollama, llama.cpp, LM Studio, a lab vLLM)."""
    host = urlsplit(base_url or OPENAI_URL).hostname or ""
    if host in ("localhost", "host.docker.internal") or host.endswith((".local", ".internal", ".lan")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def detect_mode(base_url: str | None) -> str:
    """The strongest mode a server of this URL is likely to have: OpenAI, vLLM, llama.cpp's server,
    LM Studio and Ollama (>= 0.5, grammar-enforced) all take `json_schema` on their OpenAI routes.
    The others (`tools`, `guided`, `ollama_format`) are there to be configured where they work better."""
    return "json_schema"


def default_concurrency(base_url: str | None) -> int:
    """OpenAI serves many requests at once; a local server usually one or two."""
    return 8 if is_openai(base_url) else 4 if not is_local(base_url) else 2


def mode_options(mode: str, schema: type[BaseModel]) -> dict[str, Any]:
    """The chat-completions keyword arguments that ask for `schema` in `mode`."""
    json_schema = schema.model_json_schema()
    name = schema.__name__
    if mode == "json_schema":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": name, "schema": json_schema, "strict": False}}}
    if mode == "tools":
        return {
            "tools": [{"type": "function", "function": {
                "name": TOOL_NAME, "description": f"Give the answer ({name}).", "parameters": json_schema}}],
            "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
        }
    if mode == "guided":  # vLLM: `structured_outputs` since 0.12, `guided_json` before
        return {"extra_body": {"structured_outputs": {"json": json_schema}, "guided_json": json_schema}}
    if mode == "ollama_format":
        return {"extra_body": {"format": json_schema}}
    if mode == "json_object":
        # `schema` beside json_object: llama.cpp's server and llama-cpp-python constrain the answer
        # to it (they have no json_schema type, or not in every version); others ignore it.
        return {"response_format": {"type": "json_object", "schema": json_schema}}
    return {}


@dataclass
class Endpoint:
    """One base URL's capabilities and traffic. Get it with `endpoint(...)`."""

    base_url: str
    preferred: str = "json_schema"
    limit: int = 2
    configured_limit: int = 2
    refused: set[str] = field(default_factory=set)
    cap_param: str | None = "max_tokens"
    running: int = 0
    waiting: int = 0
    throttled: int = 0  # 429s seen
    _changed: asyncio.Condition | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def modes(self) -> list[str]:
        """Modes to try, strongest first, without those the server refused."""
        chain = [self.preferred] + [m for m in FALLBACKS if m != self.preferred]
        usable = [m for m in chain if m not in self.refused]
        return usable or ["plain"]

    def refuse(self, mode: str) -> None:
        if mode != "plain":
            self.refused.add(mode)

    def throttle(self) -> None:
        """A 429: halve the number of requests in flight, never below one."""
        self.throttled += 1
        self.limit = max(1, min(self.limit, self.running) // 2 or 1)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a free slot (counted in `waiting`), hold it while the request runs."""
        loop = asyncio.get_running_loop()
        if self._changed is None or self._loop is not loop:  # a new event loop (tests, restarts)
            self._changed, self._loop, self.running, self.waiting = asyncio.Condition(), loop, 0, 0
        changed = self._changed
        self.waiting += 1
        try:
            async with changed:
                await changed.wait_for(lambda: self.running < self.limit)
                self.running += 1
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            async with changed:
                self.running -= 1
                changed.notify_all()


def endpoint(base_url: str | None, *, mode: str = "auto", concurrency: int | None = None) -> Endpoint:
    """The process's one record of an endpoint, made on first use; later calls with other
    settings update the preferred mode and limit."""
    url = (base_url or OPENAI_URL).rstrip("/")
    if mode not in ("auto", *MODES):
        raise ValueError(f"unknown structured-output mode {mode!r}; one of: auto, {', '.join(MODES)}")
    preferred = detect_mode(base_url) if mode == "auto" else mode
    limit = concurrency if concurrency and concurrency > 0 else default_concurrency(base_url)
    found = _endpoints.get(url)
    if found is None:
        found = _endpoints[url] = Endpoint(
            url, preferred=preferred, limit=limit, configured_limit=limit,
            cap_param="max_completion_tokens" if is_openai(base_url) else "max_tokens",
        )
    elif found.preferred != preferred or found.configured_limit != limit:
        found.preferred, found.limit, found.configured_limit = preferred, limit, limit
        found.refused.clear()
    return found


def activity() -> list[Endpoint]:
    """Endpoints with requests running or waiting right now (for the live view)."""
    return [e for e in _endpoints.values() if e.running or e.waiting]
