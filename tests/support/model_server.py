"""A scripted OpenAI-compatible model server for tests.

A real HTTP server (stdlib `ThreadingHTTPServer` on 127.0.0.1, a free port, a background
thread) that speaks enough of the chat-completions API for the real `openai` client:
`POST /v1/chat/completions` and `GET /v1/models`. Answers come from scripted rules:

    with ScriptedModelServer(default="{}") as server:
        server.add("PURPOSE: review", '{"overall": 8}')              # substring of the messages
        server.add(lambda req: req["model"] == "m", "hi", times=1)   # predicate on the request
        server.add("PURPOSE: analyze", Fault.status(429, times=2, then='{"ok": true}'))
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")

Rules are tried in order; a rule with `times` is used up after that many matches. A reply is
a string (the assistant content), a callable(request_json) returning any reply, a dict
(`{"content": ..., "tool_calls": [...], "reasoning_content": ..., "usage": {...}}`) or a
`Fault`. When nothing matches, `default` answers, else HTTP 400 with a message saying so.
`.requests` holds every request body received, in order; `.timeline` holds (received, answered,
purpose) of each, in `time.monotonic()` seconds, for benchmarks that ask which calls overlapped.

Imitating a server family (see `tests/support/families.py`):
- `shape(request, message) -> message | Fault` rewrites every answer the rules produce, the way
  a server and its model would (prose and fences around it, `<think>` first, tool calls...);
- `answer_delay` makes every answer slow (seconds);
- `slots=N` serves at most N requests at once: the rest queue (`busy="queue"`, like llama.cpp
  or Ollama with one slot) or get HTTP 429 with `Retry-After` (`busy="429"`); `.peak` is the
  most requests that were being answered at once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass
class Fault:
    """An injected failure. Build with the static constructors, not directly."""

    kind: str  # "status" | "delay" | "timeout" | "malformed"
    status_code: int = 200
    seconds: float = 0.0
    times: int | None = None
    then: Any = None
    message: str = ""

    @staticmethod
    def status(code: int, times: int | None = None, then: Reply | None = None, message: str = "") -> Fault:
        """Answer with HTTP `code` (429, 500, ...) and `message` in the error body. With `times`,
        only the first `times` matches fail; after that the rule answers `then`, or is used up
        when `then` is None."""
        return Fault("status", status_code=code, times=times, then=then, message=message)

    @staticmethod
    def delay(seconds: float, then: Reply = "") -> Fault:
        """Wait `seconds`, then answer `then`."""
        return Fault("delay", seconds=seconds, then=then)

    @staticmethod
    def timeout(seconds: float = 30.0) -> Fault:
        """Hang for `seconds` (longer than the client's timeout) without answering.
        The wait ends early when the server closes, so teardown stays fast."""
        return Fault("timeout", seconds=seconds)

    @staticmethod
    def malformed(body: str = '{"choices": [ this is not json') -> Fault:
        """HTTP 200, JSON content type, a body that is not valid JSON."""
        return Fault("malformed", then=body)


Match = str | Callable[[dict], bool]
Reply = str | dict | Fault | Callable[[dict], Any]


@dataclass
class _Rule:
    match: Match
    reply: Reply
    times: int | None
    used: int = 0
    fault_used: int = 0

    def matches(self, request: dict, text: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        fault = self.reply if isinstance(self.reply, Fault) else None
        if fault and fault.kind == "status" and fault.times is not None and fault.then is None \
                and self.fault_used >= fault.times:
            return False
        if isinstance(self.match, str):
            return self.match in text
        return bool(self.match(request))


def messages_text(request: dict) -> str:
    """All message contents of a chat request joined by newlines (text parts of list contents too)."""
    parts: list[str] = []
    for message in request.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def purpose_of(request: dict) -> str:
    """The `PURPOSE: ...` line of a request's system prompt ('' if none)."""
    for line in messages_text(request).splitlines():
        if line.startswith("PURPOSE: "):
            return line.removeprefix("PURPOSE: ").strip()
    return ""


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _tool_call(call: dict) -> dict:
    """Accept {"name", "arguments"} shorthand or the full OpenAI form."""
    if "function" in call:
        function = dict(call["function"])
    else:
        function = {"name": call["name"], "arguments": call.get("arguments", {})}
    if not isinstance(function.get("arguments"), str):
        function["arguments"] = json.dumps(function.get("arguments") or {})
    return {"id": call.get("id") or f"call_{uuid.uuid4().hex[:12]}", "type": "function", "function": function}


@dataclass
class _Answer:
    status: int
    body: bytes
    delay: float = 0.0
    hang: float = 0.0
    headers: dict[str, str] | None = None


class ScriptedModelServer:
    """See the module docstring. Use as a context manager, or call start()/close()."""

    def __init__(
        self,
        default: Reply | None = None,
        model: str = "scripted-model",
        *,
        shape: Callable[[dict, dict], dict] | None = None,
        slots: int | None = None,
        busy: str = "queue",
        retry_after: float = 0.05,
        answer_delay: float = 0.0,
    ):
        self.default = default
        self.model = model
        self.shape = shape
        self.slots = slots
        self.busy = busy
        self.retry_after = retry_after
        self.answer_delay = answer_delay
        self.peak = 0
        self.busy_refusals = 0
        self._in_flight = 0
        self._slots = threading.BoundedSemaphore(slots) if slots else None
        self.requests: list[dict] = []
        self.timeline: list[tuple[float, float, str]] = []
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -------------------------------------------------------------------------

    def add(self, match: Match, reply: Reply, times: int | None = None) -> ScriptedModelServer:
        """Append a rule; returns self so calls can be chained."""
        with self._lock:
            self._rules.append(_Rule(match, reply, times))
        return self

    def clear(self) -> None:
        """Forget all rules (recorded requests stay)."""
        with self._lock:
            self._rules.clear()

    def purposes(self) -> list[str]:
        """The `PURPOSE: ...` line of each recorded request's system prompt, in order ('' if none)."""
        return [purpose_of(request) for request in self.requests]

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ScriptedModelServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # a short poll interval keeps close() (and so test teardown) quick
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="scripted-model",
                                        daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answering (pure apart from the rule counters) -------------------------------------

    def _answer(self, request: dict) -> _Answer:
        text = messages_text(request)
        with self._lock:
            self.requests.append(request)
            rule = next((r for r in self._rules if r.matches(request, text)), None)
            if rule is not None:
                rule.used += 1
                reply = rule.reply
                if isinstance(reply, Fault) and reply.kind == "status" and reply.times is not None:
                    if rule.fault_used < reply.times:
                        rule.fault_used += 1
                    else:
                        reply = reply.then
            elif self.default is not None:
                reply = self.default
            else:
                return _error(400, f"scripted model server: no rule matches this request and no default is set "
                                   f"(messages start: {text[:200]!r})")
        answer = self._render(request, reply)
        answer.delay += self.answer_delay
        return answer

    def _render(self, request: dict, reply: Reply, delay: float = 0.0) -> _Answer:
        if callable(reply) and not isinstance(reply, Fault):
            try:
                produced = reply(request)
            except Exception as exc:  # noqa: BLE001 - any fixture bug: say what broke, keep serving
                return _error(500, f"scripted reply raised {type(exc).__name__}: {exc}", delay=delay)
            return self._render(request, produced, delay)
        if isinstance(reply, Fault):
            if reply.kind == "status":
                return _error(reply.status_code, reply.message or f"scripted fault: HTTP {reply.status_code}",
                              delay=delay)
            if reply.kind == "delay":
                return self._render(request, reply.then, delay + reply.seconds)
            if reply.kind == "timeout":
                return _Answer(200, b"", delay=delay, hang=reply.seconds)
            return _Answer(200, str(reply.then).encode(), delay=delay)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        usage: dict | None = None
        if isinstance(reply, dict):
            message["content"] = reply.get("content")
            if reply.get("tool_calls"):
                message["tool_calls"] = reply["tool_calls"]
            if reply.get("reasoning_content"):
                message["reasoning_content"] = reply["reasoning_content"]
            usage = reply.get("usage")
        else:
            message["content"] = "" if reply is None else str(reply)
        if self.shape is not None:
            message = self.shape(request, message)
        if message.get("tool_calls"):
            message["tool_calls"] = [_tool_call(c) for c in message["tool_calls"]]
        if usage is None:
            prompt = _estimate_tokens(json.dumps(request.get("messages", [])))
            completion = _estimate_tokens((message["content"] or "") + json.dumps(message.get("tool_calls", "")))
            usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        usage = {**usage, "total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)}
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.model,
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                "logprobs": None,
            }],
            "usage": usage,
        }
        return _Answer(200, json.dumps(body).encode(), delay=delay)


def _error(status: int, message: str, delay: float = 0.0) -> _Answer:
    kind = "rate_limit_error" if status == 429 else "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}
    return _Answer(status, json.dumps(body).encode(), delay=delay)


class _Handler(BaseHTTPRequestHandler):
    owner: ScriptedModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            body = {"object": "list", "data": [{"id": self.owner.model, "object": "model", "created": 0,
                                                "owned_by": "scripted"}]}
            self._send(_Answer(200, json.dumps(body).encode()))
        else:
            self._send(_error(404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(_error(404, f"no route POST {self.path}"))
            return
        try:
            request = json.loads(raw)
        except ValueError:
            self._send(_error(400, "request body is not valid JSON"))
            return
        if request.get("stream"):
            self._send(_error(400, "scripted model server: streaming is not supported"))
            return
        owner = self.owner
        if owner._slots is not None and not owner._slots.acquire(blocking=owner.busy == "queue"):
            with owner._lock:
                owner.requests.append(request)
                owner.busy_refusals += 1
            busy = _error(429, "scripted server busy: one request at a time")
            busy.headers = {"Retry-After": str(owner.retry_after)}
            self._send(busy)
            return
        received = time.monotonic()
        try:
            with owner._lock:
                owner._in_flight += 1
                owner.peak = max(owner.peak, owner._in_flight)
            self._send(owner._answer(request))
        finally:
            with owner._lock:
                owner._in_flight -= 1
                owner.timeline.append((received, time.monotonic(), purpose_of(request)))
            if owner._slots is not None:
                owner._slots.release()

    def _send(self, answer: _Answer) -> None:
        closing = self.owner._closing
        if answer.delay and closing.wait(answer.delay):
            return
        if answer.hang:
            closing.wait(answer.hang)
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in (answer.headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            self.close_connection = True
