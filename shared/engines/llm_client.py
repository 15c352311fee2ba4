"""Calling an OpenAI-compatible model: retries, budget, accounting, recording, replay.

Retries are ours (tenacity), and the SDK's own `max_retries` is switched off on the client we
are given: the SDK retries invisibly, so its attempts could be neither recorded as
`LlmCallRecorded` nor counted against the budget, and its backoff cannot be shortened for
tests. With tenacity every HTTP attempt is recorded and the backoff is a `RetryPolicy`.

Answers are structured: the model is asked for a JSON object (`response_format=json_object`),
which is validated with a pydantic model; an invalid answer goes back to the model with the
validation error, up to `max_format_retries` times, then the step fails with `StepError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import openai
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared.common.redaction import redact
from shared.common import telemetry
from shared.events.run import LlmCallRecorded
from shared.ports.errors import StepError

T = TypeVar("T", bound=BaseModel)
Messages = list[dict[str, str]]

# USD per million tokens (input, output). Unknown models (local servers) cost nothing.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
}


@dataclass(frozen=True)
class Budget:
    """What one engine instance (one run) may spend; None means no limit."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient failures (429, 5xx, timeouts, connection errors, garbled bodies)."""

    attempts: int = 5
    initial_seconds: float = 1.0
    max_seconds: float = 30.0


@dataclass
class Spent:
    tokens: int = 0
    cost_usd: float = 0.0


def price_for(model: str, prices: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Exact name first, then the longest known prefix (dated names like `gpt-4.1-2025-04-14`)."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else (0.0, 0.0)


def prompt_hash(model: str, messages: Messages) -> str:
    """sha256 of the canonical JSON of model and messages: the replay key."""
    canonical = json.dumps({"model": model, "messages": messages}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    # APITimeoutError is an APIConnectionError; a ValueError is a body that is not JSON.
    return isinstance(exc, openai.APIConnectionError | ValueError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection failed: {exc.__cause__ or exc}"
    if isinstance(exc, ValueError):
        return f"response body was not valid JSON ({exc})"
    return f"{type(exc).__name__}: {exc}"


_FENCE = re.compile(r"^```(?:json)?\s*\n(.*)\n```\s*$", re.DOTALL)


def parse_json_answer(text: str | None, schema: type[T], check: Callable[[T], T] | None = None) -> T:
    """The answer as `schema`; raises ValueError with a message meant for the model."""
    if not text or not text.strip():
        raise ValueError("the answer was empty; reply with one JSON object")
    body = text.strip()
    fenced = _FENCE.match(body)  # models fence JSON even when asked not to; harmless to accept
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc})") from None
    try:
        value = schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:8]
        )
        raise ValueError(f"the JSON does not match the expected shape: {problems}") from None
    return check(value) if check else value


@dataclass
class _Completion:
    text: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass
class ModelCaller:
    """One run's access to a model: every call goes through here, is budgeted and recorded."""

    client: openai.AsyncOpenAI
    model: str
    budget: Budget = field(default_factory=Budget)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_format_retries: int = 2
    replay: dict[str, str] = field(default_factory=dict)
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    timeout: float | None = None
    spent: Spent = field(default_factory=Spent)
    records: list[LlmCallRecorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        options: dict = {"max_retries": 0}
        if self.timeout is not None:
            options["timeout"] = self.timeout
        self.client = self.client.with_options(**options)

    def drain(self) -> list[LlmCallRecorded]:
        drained, self.records = self.records, []
        return drained

    def remaining_fraction(self) -> float:
        """How much of the tighter budget is left, 0..1 (1 when unlimited)."""
        left = [1.0]
        if self.budget.max_tokens:
            left.append(1 - self.spent.tokens / self.budget.max_tokens)
        if self.budget.max_cost_usd:
            left.append(1 - self.spent.cost_usd / self.budget.max_cost_usd)
        return max(0.0, min(left))

    def can_afford(self, tokens: int, cost_usd: float) -> bool:
        b, s = self.budget, self.spent
        return (b.max_tokens is None or s.tokens + tokens <= b.max_tokens) and (
            b.max_cost_usd is None or s.cost_usd + cost_usd <= b.max_cost_usd
        )

    async def ask(
        self, purpose: str, messages: Messages, schema: type[T], check: Callable[[T], T] | None = None
    ) -> T:
        """Ask for a JSON object, validate it as `schema` (then `check`, which may raise
        ValueError), retrying invalid answers with the error appended. StepError when the model
        keeps answering junk, the endpoint keeps failing, or the budget is spent."""
        # Secrets in the target's source (and our own) never reach the model endpoint.
        conversation = [{**m, "content": redact(m["content"])} if isinstance(m.get("content"), str) else m
                        for m in messages]
        attempt = 0
        problem = ""
        for _ in range(self.max_format_retries + 1):
            attempt, completion, digest = await self._complete(purpose, conversation, attempt)
            try:
                value = parse_json_answer(completion.text, schema, check)
            except ValueError as exc:
                problem = str(exc)
                self._record(purpose, digest, completion, attempt, error=f"invalid answer: {problem}")
                conversation += [
                    {"role": "assistant", "content": completion.text or ""},
                    {
                        "role": "user",
                        "content": f"Your answer was not usable: {problem}\n"
                        "Answer again with only the corrected JSON object.",
                    },
                ]
                continue
            self._record(purpose, digest, completion, attempt)
            return value
        raise StepError(
            f"{purpose}: the model's answer was still invalid after {self.max_format_retries + 1} attempts: {problem}",
            hint="try a stronger model (OPENAI_MODEL) or check that the endpoint supports JSON output",
        )

    async def _complete(self, purpose: str, messages: Messages, attempt: int) -> tuple[int, _Completion, str]:
        digest = prompt_hash(self.model, messages)
        if digest in self.replay:
            return attempt + 1, _Completion(self.replay[digest], 0, 0, 0.0), digest
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential_jitter(multiplier=self.retry.initial_seconds, jitter=self.retry.initial_seconds,
                                         max=self.retry.max_seconds),
            retry=retry_if_exception(_transient),
            reraise=False,
        )
        try:
            async for try_ in retrying:
                with try_:
                    attempt += 1
                    self._check_budget(purpose)
                    try:
                        return attempt, await self._call(messages, purpose), digest
                    except Exception as exc:
                        self._record(
                            purpose, digest, _Completion(None, 0, 0, 0.0), attempt, error=_describe(exc)
                        )
                        if not _transient(exc) and isinstance(exc, openai.APIStatusError):
                            raise StepError(
                                f"{purpose}: the model endpoint refused the request ({_describe(exc)})",
                                hint="check OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL",
                            ) from exc
                        raise
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise StepError(
                f"{purpose}: model endpoint kept failing: {_describe(last)} "
                f"(after {self.retry.attempts} attempts)",
                hint="the endpoint is overloaded or down; try again later",
            ) from last
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _call(self, messages: Messages, purpose: str = "") -> _Completion:
        with telemetry.llm_span(self.model, purpose) as span:
            completion = await self._request(messages)
            span.record_usage(completion.prompt_tokens, completion.completion_tokens, completion.cost_usd)
        return completion

    async def _request(self, messages: Messages) -> _Completion:
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            response_format={"type": "json_object"},
        )
        text = response.choices[0].message.content if response.choices else None
        usage = response.usage
        # Some local servers omit usage; estimate so the budget still means something.
        prompt_tokens = usage.prompt_tokens if usage else len(json.dumps(messages)) // 4
        completion_tokens = usage.completion_tokens if usage else len(text or "") // 4
        price_in, price_out = price_for(self.model, self.prices)
        cost = (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000
        self.spent.tokens += prompt_tokens + completion_tokens
        self.spent.cost_usd += cost
        return _Completion(text, prompt_tokens, completion_tokens, cost)

    def _check_budget(self, purpose: str) -> None:
        # Checked before each attempt; calls already in flight (concurrent categories) may
        # overshoot the budget by their own size, which is the price of not serialising them.
        b, s = self.budget, self.spent
        if (b.max_tokens is not None and s.tokens >= b.max_tokens) or (
            b.max_cost_usd is not None and s.cost_usd >= b.max_cost_usd
        ):
            raise StepError(
                f"model budget spent before {purpose}: {s.tokens} tokens of {b.max_tokens or 'unlimited'}, "
                f"${s.cost_usd:.4f} of {'$' + format(b.max_cost_usd, '.2f') if b.max_cost_usd else 'unlimited'}",
                hint="raise REPO_PILOT_TOKEN_BUDGET / REPO_PILOT_COST_BUDGET or ask for fewer categories",
            )

    def _record(
        self, purpose: str, digest: str, completion: _Completion, attempt: int, error: str | None = None
    ) -> None:
        self.records.append(
            LlmCallRecorded(
                purpose=purpose,
                model=self.model,
                prompt_hash=digest,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                cost_usd=completion.cost_usd,
                response=completion.text or "",
                attempt=attempt,
                error=error,
            )
        )
