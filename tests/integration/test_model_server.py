"""The scripted model server, exercised with the real openai client over HTTP."""

from __future__ import annotations

import json

import openai
import pytest

from tests.support.model_server import Fault, ScriptedModelServer

pytestmark = pytest.mark.integration


@pytest.fixture
def server():
    with ScriptedModelServer() as s:
        yield s


def client(server: ScriptedModelServer, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0, **kw)


async def ask(c: openai.AsyncOpenAI, text: str, system: str = "PURPOSE: test"):
    return await c.chat.completions.create(
        model="m1", messages=[{"role": "system", "content": system}, {"role": "user", "content": text}]
    )


async def test_string_rule_answers_with_content_usage_model_and_id(server):
    server.add("hello", "world")
    reply = await ask(client(server), "say hello")
    assert reply.choices[0].message.content == "world"
    assert reply.model == "m1"
    assert reply.id.startswith("chatcmpl-")
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    assert server.requests[0]["messages"][1]["content"] == "say hello"
    assert server.purposes() == ["test"]


async def test_rules_in_order_times_and_default(server):
    server.add("x", "first", times=1).add("x", "second")
    server.default = "fallback"
    c = client(server)
    assert (await ask(c, "x")).choices[0].message.content == "first"
    assert (await ask(c, "x")).choices[0].message.content == "second"
    assert (await ask(c, "y")).choices[0].message.content == "fallback"
    assert len(server.requests) == 3


async def test_predicate_and_callable_reply(server):
    server.add(lambda req: req["model"] == "m1", lambda req: f"n={len(req['messages'])}")
    assert (await ask(client(server), "anything")).choices[0].message.content == "n=2"


async def test_no_match_without_default_is_a_clear_400(server):
    server.add("never", "x")
    with pytest.raises(openai.BadRequestError, match="no rule matches"):
        await ask(client(server), "something else")


async def test_status_faults_then_recovery(server):
    server.add("go", Fault.status(429, times=2, then="ok"))
    server.add("boom", Fault.status(500))
    c = client(server)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            await ask(c, "go")
    assert (await ask(c, "go")).choices[0].message.content == "ok"
    with pytest.raises(openai.InternalServerError):
        await ask(c, "boom")


async def test_status_fault_without_then_is_used_up(server):
    server.add("go", Fault.status(429, times=1)).add("go", "after")
    c = client(server)
    with pytest.raises(openai.RateLimitError):
        await ask(c, "go")
    assert (await ask(c, "go")).choices[0].message.content == "after"


async def test_sdk_retries_through_a_429(server):
    server.add("go", Fault.status(429, times=1, then="ok"))
    c = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=2)
    assert (await ask(c, "go")).choices[0].message.content == "ok"
    assert len(server.requests) == 2


async def test_delay_then_reply(server):
    server.add("slow", Fault.delay(0.05, then="late"))
    assert (await ask(client(server), "slow")).choices[0].message.content == "late"


async def test_timeout_fault_trips_the_client_timeout(server):
    server.add("hang", Fault.timeout())
    with pytest.raises(openai.APITimeoutError):
        await ask(client(server, timeout=0.3), "hang")


async def test_malformed_body(server):
    server.add("bad", Fault.malformed())
    with pytest.raises(ValueError):  # the SDK surfaces a JSONDecodeError as is
        await ask(client(server), "bad")


async def test_tool_calls_reply(server):
    server.add("tool", {"content": None, "tool_calls": [{"name": "read_file", "arguments": {"path": "a.py"}}]})
    reply = await ask(client(server), "use a tool")
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "read_file"
    assert json.loads(call.function.arguments) == {"path": "a.py"}


async def test_models_endpoint(server):
    models = await client(server).models.list()
    assert [m.id for m in models.data] == ["scripted-model"]


async def test_a_scripted_reply_that_raises_is_a_500_saying_why(server):
    def broken(_request):
        raise RuntimeError("fixture bug")

    server.add("x", broken)
    with pytest.raises(openai.InternalServerError, match="fixture bug"):
        await ask(client(server), "x")
