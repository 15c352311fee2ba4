"""The coding agent: a small tool-calling loop over the `openai` SDK.

Two tools: `bash` (one shell command in the workspace, through the sandbox: confined to the
workspace, no network unless `AgentLimits.network`, output truncated)
and `submit` (ends the run with the feature description). Bounded by a step limit, a cost
limit and a wall-clock timeout; every message and step is saved as a JSON trajectory.

Why ours and not mini-swe-agent, SWE-agent or OpenHands: the loop is ~150 lines, while those
bring litellm (and its large dependency tree), their own config and trajectory formats, and
their own process model; we need exactly one shell tool through our sandbox, our cost
accounting, the `openai` client every other engine here already uses (so `OPENAI_BASE_URL`
and the scripted test server just work), and a trajectory we control.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai

from shared.adapters import task_commands
from shared.adapters.sandbox import Sandbox
from shared.engines.llm_client import DEFAULT_PRICES, known_price

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "bash",
        "description": "Run one bash command in the repository root and return its exit code and output.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
                       "required": ["command"]},
    }},
    {"type": "function", "function": {
        "name": "submit",
        "description": "Finish: the feature and its tests are written and pass.",
        "parameters": {"type": "object", "properties": {
            "feature_md": {"type": "string", "description": "The feature description in feature.md format."},
            "summary": {"type": "string"}}, "required": ["feature_md"]},
    }},
]

NUDGE = "Use the `bash` tool to work, and call `submit` with the feature description when the tests pass."


@dataclass
class AgentLimits:
    step_limit: int = 30
    cost_limit_usd: float = 1.0
    timeout_s: float = 1800.0
    command_timeout_s: float = 300.0
    output_chars: int = 10_000
    network: bool = False  # the agent's shell reaches the network only when this is set
    price: tuple[float, float] | None = None  # USD per million tokens in/out; None: the cost is unknown
    token_limit: int | None = None  # prompt + completion tokens per attempt (what limits an unpriced model)


@dataclass
class AgentResult:
    submitted: bool
    feature_md: str = ""
    steps: int = 0
    cost_usd: float | None = 0.0  # None: the model has no price, so its cost is unknown (never read as 0)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_reason: str = ""  # submitted | step_limit | cost_limit | token_limit | timeout | model_error
    error: str = ""
    duration: float = 0.0
    trajectory: dict[str, Any] = field(default_factory=dict)


def model_price(model: str) -> tuple[float, float] | None:
    """USD per million tokens (in, out) from the LLM engine's price list; None when it has none."""
    return known_price(model.removeprefix("openai/"), DEFAULT_PRICES)


def call_cost(model: str, prompt_tokens: int, completion_tokens: int,
              price: tuple[float, float] | None = None) -> float | None:
    """USD for one call at `price` (default: the price list's); None when the model has no price (pure)."""
    cost_in, cost_out = price or model_price(model) or (None, None)
    if cost_in is None or cost_out is None:
        return None
    return (prompt_tokens * cost_in + completion_tokens * cost_out) / 1_000_000


def truncate(text: str, limit: int) -> str:
    """Head and tail of `text` with a marker in between when it is longer than `limit` (pure)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - limit} characters cut] …\n{text[-half:]}"


async def _bash(command: str, workspace: Path, limits: AgentLimits, sandbox: Sandbox | None) -> str:
    # Confined to the workspace; the network only when the attempt allows it.
    result = await task_commands.run(["bash", "-c", command], cwd=workspace, timeout=limits.command_timeout_s,
                            env=task_commands.base_env(), sandbox=sandbox, network=limits.network, host_fs=False)
    head = f"exit code {result.exit_code}" + (" (timed out)" if result.timed_out else "")
    return truncate(f"{head}\n{result.output}", limits.output_chars)


def _arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except ValueError as exc:
        raise ValueError(f"arguments are not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError("arguments must be a JSON object")  # noqa: TRY004 - one error type for the model
    return value


async def _loop(client: openai.AsyncOpenAI, model: str, messages: list[dict], workspace: Path,
                limits: AgentLimits, result: AgentResult, steps_log: list[dict], sandbox: Sandbox | None) -> None:
    while True:
        if result.steps >= limits.step_limit:
            result.stop_reason = "step_limit"
            return
        if result.cost_usd is not None and result.cost_usd >= limits.cost_limit_usd > 0:
            result.stop_reason = "cost_limit"
            return
        if limits.token_limit and result.prompt_tokens + result.completion_tokens >= limits.token_limit:
            result.stop_reason = "token_limit"
            return
        result.steps += 1
        started = time.monotonic()
        response = await client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
        usage = response.usage
        p, c = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        cost = call_cost(model, p, c, limits.price) if limits.price or result.cost_usd is not None else None
        result.prompt_tokens += p
        result.completion_tokens += c
        result.cost_usd = None if cost is None or result.cost_usd is None else result.cost_usd + cost
        message = response.choices[0].message
        calls = message.tool_calls or []
        messages.append({"role": "assistant", "content": message.content,
                         **({"tool_calls": [tc.model_dump() for tc in calls]} if calls else {})})
        step = {"step": result.steps, "prompt_tokens": p, "completion_tokens": c, "cost_usd": cost,
                "content": message.content, "actions": []}
        steps_log.append(step)
        if not calls:
            messages.append({"role": "user", "content": NUDGE})
            continue
        submit = None
        for call in calls:
            try:
                args = _arguments(call.function.arguments)
                if call.function.name == "bash":
                    output = await _bash(str(args.get("command", "")), workspace, limits, sandbox)
                elif call.function.name == "submit":
                    submit = args
                    output = "submitted"
                else:
                    output = f"unknown tool {call.function.name!r}: use bash or submit"
            except ValueError as exc:
                output = f"error: {exc}"
            step["actions"].append({"tool": call.function.name, "arguments": call.function.arguments,
                                    "output": output})
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
        step["duration"] = time.monotonic() - started
        if submit is not None:
            result.submitted = True
            result.feature_md = str(submit.get("feature_md", ""))
            result.stop_reason = "submitted"
            return


async def run_agent(client: openai.AsyncOpenAI, model: str, system: str, prompt: str, workspace: Path,
                    limits: AgentLimits | None = None, trajectory_path: Path | None = None,
                    sandbox: Sandbox | None = None) -> AgentResult:
    """Let the model work in `workspace` until it submits or a limit stops it; its shell commands
    run in `sandbox` (default: the local sandbox, confined to `workspace`).

    Never raises for model or tool failures: they end the run with `stop_reason` and `error`.
    The trajectory (messages, steps, result) is written to `trajectory_path` when given.
    """
    limits = limits or AgentLimits()
    messages: list[dict] = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    steps_log: list[dict] = []
    result = AgentResult(submitted=False, cost_usd=0.0 if limits.price or model_price(model) else None)
    started = time.monotonic()
    try:
        async with asyncio.timeout(limits.timeout_s):
            await _loop(client, model, messages, workspace, limits, result, steps_log, sandbox)
    except TimeoutError:
        result.stop_reason, result.error = "timeout", f"agent timed out after {limits.timeout_s:.0f}s"
    except openai.OpenAIError as exc:
        result.stop_reason, result.error = "model_error", f"model call failed: {exc}"
    result.duration = time.monotonic() - started
    summary = {k: v for k, v in asdict(result).items() if k != "trajectory"}
    result.trajectory = {"model": model, "limits": asdict(limits), "result": summary,
                         "steps": steps_log, "messages": messages}
    if trajectory_path is not None:
        trajectory_path.parent.mkdir(parents=True, exist_ok=True)
        trajectory_path.write_text(json.dumps(result.trajectory, indent=2, default=str))
    return result
