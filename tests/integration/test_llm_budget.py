"""The run's model budget holds: concurrent calls reserve before they start, usage a server
misreports is measured instead, and the failure states the configured limits. Real openai client,
real HTTP to the scripted model server."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from shared.engines import prompts as p
from shared.engines.llm import LlmEngine
from shared.engines.llm_budget import Budget, Ledger
from shared.engines.llm_client import ModelCaller, RetryPolicy
from shared.engines.llm_endpoint import Endpoint
from shared.ports.errors import StepError
from tests.support.model_server import ScriptedModelServer, messages_text

pytestmark = pytest.mark.integration

DOCS = json.dumps({"specification": "# Spec", "graph": "# Graph", "architecture": "# Arch"})
FAST = RetryPolicy(attempts=2, initial_seconds=0.01, max_seconds=0.02)


def full_cap(request: dict) -> dict:
    """The worst honest answer: it uses every answer token the request allowed."""
    cap = request.get("max_completion_tokens") or request.get("max_tokens")
    return {"content": DOCS, "usage": {"prompt_tokens": len(json.dumps(request["messages"])) // 4,
                                       "completion_tokens": cap}}


def caller(server: ScriptedModelServer, ledger: Ledger, *, concurrency: int = 16, model: str = "gpt-4.1") -> ModelCaller:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
    return ModelCaller(client, model, ledger=ledger, endpoint=Endpoint(server.base_url, limit=concurrency),
                       retry=FAST, timeout=5, answer_cap=2_000)


def ask(c: ModelCaller, n: int):
    messages = [p.system("analyze", p.ANALYZE), p.user(f"request {n}: " + "x" * 2_000)]
    return c.ask("analyze", messages, p.AnalysisAnswer)


async def test_concurrent_calls_against_a_small_budget_never_exceed_it():
    with ScriptedModelServer(default=full_cap) as server:
        ledger = Ledger(Budget(max_tokens=10_000, max_cost_usd=0.05))
        callers = [caller(server, ledger) for _ in range(4)]  # four steps of one run, one ledger
        results = await asyncio.gather(*(ask(callers[n % 4], n) for n in range(16)), return_exceptions=True)

    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, StepError)]
    assert answered and refused and len(answered) + len(refused) == 16
    records = [r for c in callers for r in c.drain()]
    spent = sum(r.prompt_tokens + r.completion_tokens for r in records)
    assert spent == ledger.tokens <= 10_000
    assert sum(r.cost_usd for r in records) <= 0.05
    assert ledger.reserved_tokens == 0 and ledger.reserved_cost_usd == pytest.approx(0)
    assert len(server.requests) == len(answered)  # refused calls never reached the server
    assert "against a limit of 10,000 tokens and a limit of $0.05" in str(refused[0])
    # the answer cap sent is what the reservation left room for
    assert all(0 < (r.get("max_completion_tokens") or r["max_tokens"]) <= 2_000 for r in server.requests)


async def test_negative_usage_cannot_switch_the_budget_off():
    lying = {"content": DOCS, "usage": {"prompt_tokens": -1_000_000, "completion_tokens": -5}}
    with ScriptedModelServer(default=lying) as server:
        ledger = Ledger(Budget(max_tokens=5_000, max_cost_usd=5.0))
        c = caller(server, ledger)
        with pytest.raises(StepError, match="model budget spent before analyze") as caught:
            for n in range(50):
                await ask(c, n)
    records = c.drain()
    assert 1 <= len(records) < 10 and len(server.requests) == len(records)
    assert all(r.prompt_tokens > 600 and r.completion_tokens > 0 and r.cost_usd > 0 for r in records)
    assert ledger.tokens <= 5_000 and ledger.cost_usd > 0
    assert "a limit of 5,000 tokens and a limit of $5.00" in str(caught.value)


async def test_missing_usage_is_counted_as_the_request_size():
    with ScriptedModelServer(default={"content": DOCS, "usage": {}}) as server:
        ledger = Ledger(Budget(max_tokens=100_000))
        c = caller(server, ledger)
        await ask(c, 1)
    [record] = c.drain()
    sent = len(messages_text(server.requests[0]))
    assert record.prompt_tokens >= sent // 4 and record.completion_tokens >= len(DOCS) // 4
    assert ledger.tokens == record.prompt_tokens + record.completion_tokens


async def test_engines_of_one_run_share_its_ledger_through_the_factory(settings, tmp_path):
    from shared.app.bootstrap import real_engine_factory
    from shared.events import PipelineRequested
    from shared.policy.run import RunContext

    with ScriptedModelServer(default=full_cap) as server:
        s = settings.model_copy(update={"openai_base_url": server.base_url, "openai_api_key": "t",
                                        "run_token_budget": 7_000, "run_cost_budget_usd": 100.0})
        make = real_engine_factory(s, retry=FAST)
        ctx = RunContext(run_id="run-budget", request=PipelineRequested(repo=str(tmp_path), engine="llm"))
        first, second = make(ctx, []), make(ctx, [])
        assert isinstance(first, LlmEngine) and first.caller.ledger is second.caller.ledger
        results = await asyncio.gather(*(ask(e.caller, n) for n, e in enumerate([first, second] * 4)),
                                       return_exceptions=True)
    assert any(isinstance(r, StepError) for r in results)
    assert first.caller.ledger.tokens <= 7_000


async def test_a_cancelled_call_gives_its_reservation_back():
    from tests.support.model_server import Fault

    with ScriptedModelServer(default=Fault.delay(5, DOCS)) as server:
        ledger = Ledger(Budget(max_tokens=100_000))
        c = caller(server, ledger)
        task = asyncio.create_task(ask(c, 1))
        while not server.requests:
            await asyncio.sleep(0.01)
        assert ledger.reserved_tokens > 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert ledger.reserved_tokens == 0 and ledger.tokens == 0


async def test_a_reply_over_its_reservation_stops_the_runs_calls_and_bounds_the_overshoot():
    """A hostile endpoint reports three times the answer cap it was sent, with two calls in flight
    that together hold the whole budget: the first reply over it abandons the other call and
    admits no more, so the run overspends by at most that one reply's excess over its cap."""
    import threading

    second_arrived, release = threading.Event(), threading.Event()
    order: list[int] = []
    lock = threading.Lock()

    def overreporting(request: dict) -> dict:
        with lock:
            order.append(len(order))
            mine = order[-1]
        if mine == 0:
            second_arrived.wait(15)  # both calls are in flight before either answers
        else:
            second_arrived.set()
            release.wait(3)  # then answers (inside the client timeout) unless abandoned first
        cap = request.get("max_completion_tokens") or request.get("max_tokens")
        return {"content": DOCS, "usage": {"prompt_tokens": len(json.dumps(request["messages"])) // 4,
                                           "completion_tokens": 3 * cap}}

    with ScriptedModelServer(default=overreporting) as server:
        ledger = Ledger(Budget(max_tokens=5_000))
        c = caller(server, ledger, concurrency=2)
        try:
            results = await asyncio.gather(*(ask(c, n) for n in range(6)), return_exceptions=True)
        finally:
            release.set()
    records = c.drain()
    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, StepError)]
    assert len(answered) == 1 and len(refused) == 5, results
    assert len(server.requests) == 2  # nothing was sent after the reply over the budget
    caps = [r.get("max_completion_tokens") or r["max_tokens"] for r in server.requests]
    reported = [r.prompt_tokens + r.completion_tokens for r in records if r.error is None]
    worst_excess = max(3 * cap + len(json.dumps(req["messages"])) // 4 - cap
                       for cap, req in zip(caps, server.requests, strict=True))
    assert ledger.tokens == sum(r.prompt_tokens + r.completion_tokens for r in records)
    assert ledger.tokens <= 5_000 + worst_excess, (ledger.tokens, reported, caps)
    assert ledger.reserved_tokens == 0
    assert "model budget spent" in str(refused[0])
