"""Calling an OpenAI-compatible model: retries, budget, accounting, recording, replay.

Retries are ours (tenacity), and the SDK's own `max_retries` is switched off on the client we
are given: the SDK retries invisibly, so its attempts could be neither recorded as
`LlmCallRecorded` nor counted against the budget, and its backoff cannot be shortened for
tests. With tenacity every HTTP attempt is recorded and the backoff is a `RetryPolicy`.

Answers are structured: the endpoint's strongest structured-output mode asks for the answer's
JSON schema (`llm_endpoint`), the answer is read tolerantly (`llm_answers`: prose, fences and
reasoning around the object are fine) and validated with a pydantic model; an unusable answer
goes back to the model with the problem, up to `max_format_retries` times, then the step fails
with a `StepError` that quotes what the model said. The run's budget is reserved before each
request and settled after it (`llm_budget`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import openai
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from shared.common.redaction import redact
from shared.common import telemetry
from shared.engines.llm_answers import parse_json_answer, shown
from shared.common.tasks import cancel_until_done
from shared.engines.llm_budget import HINT as BUDGET_HINT
from shared.engines.llm_budget import Ledger, Reservation, counted, estimate_tokens
from shared.engines.llm_endpoint import Endpoint, endpoint, mode_options
from shared.events.limits import clip
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
class RetryPolicy:
    """Backoff for transient failures (429, 5xx, timeouts, connection errors, garbled bodies)."""

    attempts: int = 5
    initial_seconds: float = 1.0
    max_seconds: float = 30.0


@dataclass
class Spent:
    """What one caller (one engine, one step) has spent; the run's total is in its Ledger."""

    tokens: int = 0
    cost_usd: float = 0.0


def known_price(model: str, prices: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """Exact name first, then the longest known prefix (dated names like `gpt-4.1-2025-04-14`);
    None when the list has no price for the model: its cost is unknown, not zero."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name + "-")]
    return prices[max(matches, key=len)] if matches else None


def price_for(model: str, prices: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """`known_price`, with (0, 0) for a model the list does not price."""
    return known_price(model, prices) or (0.0, 0.0)


def prompt_hash(model: str, messages: Messages) -> str:
    """sha256 of the canonical JSON of model and messages: the replay key."""
    canonical = json.dumps({"model": model, "messages": messages}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _redacted(messages: Messages) -> Messages:
    return [{**m, "content": redact(m["content"])} if isinstance(m.get("content"), str) else m for m in messages]


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



# What a server says when it does not know a structured-output option (llama-cpp-python's server
# answers 500 "Input should be 'text' or 'json_object'" for `response_format: json_schema`).
_OPTION_REFUSED = re.compile(r"response_format|json_schema|json_object|tool_choice|\btools\b|guided_json"
                             r"|structured_outputs|\bformat\b", re.IGNORECASE)


def refuses_option(exc: BaseException) -> bool:
    """The server refused the request's options, not the request: 400 or 422, or a 500 whose
    message names a structured-output option (some servers validate the body and crash)."""
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return not _CONTEXT_LENGTH.search(exc.message)
    return isinstance(exc, openai.InternalServerError) and bool(_OPTION_REFUSED.search(exc.message))


_CONTEXT_LENGTH = re.compile(r"context length|context window|maximum context|too many tokens|prompt is too long",
                             re.IGNORECASE)


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds a 429/503 asks us to wait (`Retry-After` in seconds), if it says."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class _Abandoned(Exception):
    """A call stopped in flight because the run's budget was overrun by another call's reply."""


@dataclass
class _Completion:
    text: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


@dataclass
class ModelCaller:
    """One run's access to a model: every call goes through here, waits for a slot on the
    endpoint, is budgeted (reserve, then settle) and recorded."""

    client: openai.AsyncOpenAI
    model: str
    ledger: Ledger = field(default_factory=Ledger)
    endpoint: Endpoint | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_format_retries: int = 2
    replay: dict[str, str] = field(default_factory=dict)
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    timeout: float | None = None
    answer_cap: int = 16_384
    spent: Spent = field(default_factory=Spent)
    records: list[LlmCallRecorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        options: dict = {"max_retries": 0}
        if self.timeout is not None:
            options["timeout"] = self.timeout
        self.client = self.client.with_options(**options)
        if self.endpoint is None:
            self.endpoint = endpoint(str(self.client.base_url))

    def drain(self) -> list[LlmCallRecorded]:
        drained, self.records = self.records, []
        return drained

    def remaining_fraction(self) -> float:
        """How much of the run's tighter budget is left, 0..1 (1 when unlimited)."""
        return self.ledger.remaining_fraction()

    def can_afford(self, tokens: int, cost_usd: float) -> bool:
        return self.ledger.fits(tokens, cost_usd)

    def ceiling(self, messages: Messages, schema: type[BaseModel]) -> tuple[int, float]:
        """(tokens, cost) one call of `messages` reserves at most: its prompt plus the answer cap."""
        assert self.endpoint is not None
        prompt = estimate_tokens([messages, mode_options(self.endpoint.modes()[0], schema)])
        price_in, price_out = price_for(self.model, self.prices)
        return prompt + self.answer_cap, (prompt * price_in + self.answer_cap * price_out) / 1e6

    def note(self, purpose: str, text: str) -> None:
        """Attach a note to the last recorded call of `purpose` (what was accepted, and why)."""
        for i in range(len(self.records) - 1, -1, -1):
            if self.records[i].purpose == purpose:
                old = self.records[i].note
                self.records[i] = self.records[i].model_copy(update={"note": f"{old}; {text}" if old else text})
                return

    async def ask(
        self, purpose: str, messages: Messages, schema: type[T], check: Callable[[T], T] | None = None
    ) -> T:
        """Ask for a JSON object, read it tolerantly as `schema` (then `check`, which may raise
        ValueError), retrying unusable answers with the problem appended. StepError when the model
        keeps answering nothing usable (quoting what it said), the endpoint keeps failing, or the
        budget is spent."""
        # Secrets in the target's source (and our own) never reach the model endpoint. The scan is
        # CPU work under a lock git's telemetry also takes: off the loop the services share.
        conversation = await asyncio.to_thread(_redacted, messages)
        attempt = 0
        problem, answer = "", None
        for _ in range(self.max_format_retries + 1):
            attempt, completion, digest = await self._complete(purpose, conversation, schema, attempt)
            try:
                value = parse_json_answer(completion.text, schema, check)
            except ValueError as exc:
                problem, answer = str(exc), completion.text
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
            f"{purpose}: nothing usable in the model's answers after {self.max_format_retries + 1} attempts: "
            f"{problem}. The last answer was {shown(answer)}",
            hint="try a stronger model (OPENAI_MODEL) or set REPO_PILOT_LLM_STRUCTURED to a mode the "
            "endpoint supports",
        )

    async def _complete(
        self, purpose: str, messages: Messages, schema: type[BaseModel], attempt: int
    ) -> tuple[int, _Completion, str]:
        digest = prompt_hash(self.model, messages)
        if digest in self.replay:
            return attempt + 1, _Completion(self.replay[digest], 0, 0, 0.0), digest
        exponential = wait_exponential_jitter(
            multiplier=self.retry.initial_seconds, jitter=self.retry.initial_seconds,
            max=self.retry.max_seconds,
        )

        def wait(state: RetryCallState) -> float:
            asked = _retry_after(state.outcome.exception() if state.outcome else None)
            base = exponential(state)
            return max(base, min(asked, self.retry.max_seconds)) if asked is not None else base

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait,
            retry=retry_if_exception(_transient),
            reraise=False,
        )
        counter = [attempt]
        try:
            async for try_ in retrying:
                with try_:
                    completion = await self._attempt(purpose, messages, schema, digest, counter)
                    return counter[0], completion, digest
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise StepError(
                f"{purpose}: model endpoint kept failing: {_describe(last)} "
                f"(after {self.retry.attempts} attempts)",
                hint="the endpoint is overloaded or down; try again later, or lower REPO_PILOT_LLM_CONCURRENCY",
            ) from last
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _attempt(
        self, purpose: str, messages: Messages, schema: type[BaseModel], digest: str, counter: list[int]
    ) -> _Completion:
        """One try: a slot on the endpoint, then requests until one is answered; a mode (or the
        answer cap) the server refuses (`refuses_option`) is dropped and the request sent again at once."""
        ep = self.endpoint
        assert ep is not None
        async with ep.slot():
            while True:
                mode = ep.modes()[0]
                options = mode_options(mode, schema)
                cap_param = ep.cap_param
                counter[0] += 1
                reservation = await self.ledger.reserve_or_wait(
                    purpose, estimate_tokens([messages, options]), self.answer_cap,
                    price_for(self.model, self.prices),
                )
                if cap_param:
                    options[cap_param] = reservation.answer_tokens
                try:
                    completion = await self._call_unless_overrun(purpose, messages, options, reservation)
                except _Abandoned:
                    # The server may bill what it already did: charged what the call held.
                    self.ledger.settle(reservation, reservation.tokens, reservation.cost_usd)
                    abandoned = _Completion(None, reservation.prompt_tokens, reservation.answer_tokens,
                                            reservation.cost_usd)
                    self._record(purpose, digest, abandoned, counter[0], error="abandoned in flight: another "
                                 "call's reply spent the run's budget; charged what this call reserved")
                    raise StepError(self.ledger.spent_message(purpose, reservation.prompt_tokens),
                                    hint=BUDGET_HINT) from None
                except BaseException as exc:
                    # A request that timed out reached the server, which may bill what it did: charged
                    # what the call held. Anything else (refused, cancelled, never sent) cost nothing.
                    charged = (_Completion(None, reservation.prompt_tokens, reservation.answer_tokens,
                                           reservation.cost_usd)
                               if isinstance(exc, openai.APITimeoutError) else _Completion(None, 0, 0, 0.0))
                    self.ledger.settle(reservation, charged.prompt_tokens + charged.completion_tokens,
                                       charged.cost_usd)  # cancelled too: never leave it held
                    self.spent.tokens += charged.prompt_tokens + charged.completion_tokens
                    self.spent.cost_usd += charged.cost_usd
                    if not isinstance(exc, Exception):
                        raise
                    refused = refuses_option(exc)
                    self._record(purpose, digest, charged, counter[0],
                                 error=_describe(exc) + (f" (asked with {mode})" if refused and mode != "plain" else ""))
                    if isinstance(exc, openai.RateLimitError):
                        ep.throttle()
                    if refused:
                        if cap_param and cap_param in exc.message:
                            ep.cap_param = None
                            continue
                        if mode != "plain":
                            ep.refuse(mode)
                            continue
                    if not _transient(exc) and isinstance(exc, openai.APIStatusError):
                        raise StepError(
                            f"{purpose}: the model endpoint refused the request ({_describe(exc)})",
                            hint="check OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL",
                        ) from exc
                    raise
                self.ledger.settle(
                    reservation, completion.prompt_tokens + completion.completion_tokens, completion.cost_usd
                )
                self.spent.tokens += completion.prompt_tokens + completion.completion_tokens
                self.spent.cost_usd += completion.cost_usd
                return completion

    async def _call_unless_overrun(self, purpose: str, messages: Messages, options: dict,
                                   reservation: Reservation) -> _Completion:
        """`_call`, abandoned (`_Abandoned`) as soon as the run's budget is overrun by another
        call's reply: what it would answer no longer has budget behind it."""
        call = asyncio.ensure_future(self._call(purpose, messages, options, reservation.prompt_tokens))
        overrun = asyncio.ensure_future(self.ledger.overrun.wait())
        try:
            await asyncio.wait({call, overrun}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            overrun.cancel()
            if not call.done():
                await cancel_until_done(call)
        if call.cancelled():
            raise _Abandoned
        return call.result()

    async def _call(self, purpose: str, messages: Messages, options: dict, prompt_estimate: int) -> _Completion:
        with telemetry.llm_span(self.model, purpose) as span:
            response = await self.client.chat.completions.create(model=self.model, messages=messages, **options)
            text = _answer_text(response)
            usage = response.usage
            # Missing, zero or negative usage is counted as what we measured, so no server can
            # switch the budget off.
            prompt_tokens = counted(getattr(usage, "prompt_tokens", None), prompt_estimate)
            completion_tokens = counted(getattr(usage, "completion_tokens", None), estimate_tokens(text or ""))
            price_in, price_out = price_for(self.model, self.prices)
            cost = (prompt_tokens * price_in + completion_tokens * price_out) / 1_000_000
            span.record_usage(prompt_tokens, completion_tokens, cost)
        return _Completion(text, prompt_tokens, completion_tokens, cost)

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
                response=clip(completion.text or "", what="model answer"),
                attempt=attempt,
                error=error,
            )
        )


def _answer_text(response) -> str | None:
    """The answer: a tool call's arguments when the model called our tool, else the content.
    `reasoning_content` (vLLM's reasoning parser) is never read."""
    if not response.choices:
        return None
    message = response.choices[0].message
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is not None and function.arguments:
            return function.arguments
    return message.content
