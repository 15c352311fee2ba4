"""One whole attempt: prompt → agent → split → validate, written to the attempt folder.

The folder holds feature.patch, tests.patch, feature.md, result.json (validity, conflicts, test
counts, cost, steps, duration) and trajectory.json.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from shared.adapters import task_commands as proc
from shared.adapters.workspace import checkout_base, diff_against_base
from shared.engines.generator.agent import AgentLimits, AgentResult, model_price, run_agent
from shared.engines.generator.validate import (
    DEFAULT_MIN_SCORE,
    DEFAULT_MUTANTS,
    Backend,
    ValidationResult,
    validate_patches,
)
from shared.events.gen import FeatureGenerated, FeaturePromptBuilt, FeatureValidated
from shared.policy.generation.prompt import SYSTEM, build_prompt
from shared.policy.generation.split import Split, split_diff
from shared.policy.generation.task import Task
from shared.ports.errors import StepError


@dataclass
class GenerateOptions:
    repo_path: str | None = None
    model: str = "gpt-4.1"
    backend: Backend = "auto"
    feature: int | None = None
    step_limit: int = 30
    cost_limit_usd: float = 1.0
    min_conflicts: int = 1
    timeout_s: float = 1800.0
    test_timeout_s: float = 900.0
    base_url: str | None = None
    api_key: str | None = None
    agent_network: bool = False  # the agent's shell may reach the network (tasks that must install)
    uv_cache_dir: Path | None = None  # kept across validations (REPO_PILOT_HOME/uv-cache from the faces)
    mutants: int = DEFAULT_MUTANTS  # mutants of the feature's added lines the new tests must kill
    min_mutation_score: float = DEFAULT_MIN_SCORE
    all_proofs: bool = False  # run every proof even after one fails
    price: tuple[float, float] | None = None  # USD per million tokens in/out; default: the price list's
    token_limit: int | None = None  # tokens per attempt; what limits a model without a price


DEFAULT_TOKEN_LIMIT = 2_000_000


def spending(options: GenerateOptions) -> tuple[tuple[float, float] | None, int | None, str]:
    """(price, token limit, note) of an attempt (pure): a model without a price (not in the list,
    none given) is limited by tokens instead of a cost that would read as $0, and the note says so."""
    price = options.price or model_price(options.model)
    if price is not None:
        return price, options.token_limit, ""
    limit = options.token_limit or DEFAULT_TOKEN_LIMIT
    return None, limit, (f"model {options.model} has no price in the price list: its cost is unknown (not $0), "
                         f"so each attempt is limited by {limit:,} tokens instead of --cost-limit; give "
                         "--price-in/--price-out or REPO_PILOT_MODEL_PRICES to limit it by cost")


@dataclass
class AttemptResult:
    attempt: int
    folder: Path
    prompt: FeaturePromptBuilt
    agent: AgentResult
    split: Split
    validation: ValidationResult | None
    feature_md: str = ""
    duration: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.validation is not None and self.validation.valid

    @property
    def reason(self) -> str:
        """Why the attempt failed, else what made it valid."""
        if self.reasons:
            return "; ".join(self.reasons)
        return self.validation.reason if self.validation else ""

    def generated_payload(self) -> FeatureGenerated:
        return FeatureGenerated(feature_patch=self.split.feature_patch, tests_patch=self.split.tests_patch,
                                feature_md=self.feature_md, cost_usd=self.agent.cost_usd, steps=self.agent.steps,
                                trajectory_path=str(self.folder / "trajectory.json"))

    def validated_payload(self) -> FeatureValidated:
        if self.validation is not None:
            payload = self.validation.to_payload()
            return payload.model_copy(update={"reason": self.reason}) if self.reasons else payload
        return FeatureValidated(tests_passed=False, valid=False, reason=self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "valid": self.success,
            "reason": self.reason,
            "cost_usd": None if self.agent.cost_usd is None else round(self.agent.cost_usd, 6),
            "cost_note": "" if self.agent.cost_usd is not None else "unpriced model: limited by tokens",
            "steps": self.agent.steps,
            "agent_stop": self.agent.stop_reason,
            "agent_error": self.agent.error,
            "tokens": {"prompt": self.agent.prompt_tokens, "completion": self.agent.completion_tokens},
            "duration_s": round(self.duration, 3),
            "files": {"feature": self.split.feature_files, "tests": self.split.test_files,
                      "dropped": self.split.dropped},
            "hotspots": [h.model_dump() for h in self.prompt.hotspots],
            "validation": self.validation.to_dict() if self.validation else None,
        }


def repo_source(task: Task, repo_path: Path | str | None) -> str:
    """Where the base repository comes from: `--repo-path`, else the URL in setup.sh."""
    if repo_path:
        path = Path(repo_path).expanduser().resolve()
        if not path.exists():
            raise StepError(f"--repo-path {path} does not exist")
        return str(path)
    if task.repo_url:
        return task.repo_url
    raise StepError(f"no base repository for {task.path}: setup.sh names none",
                    hint="pass --repo-path with a local clone")


def make_client(options: GenerateOptions) -> openai.AsyncOpenAI:
    """The model client; a clear StepError when no endpoint is configured at all."""
    if not (options.base_url or options.api_key):
        raise StepError("no model endpoint configured for the agent",
                        hint="set OPENAI_API_KEY, or OPENAI_BASE_URL for a local OpenAI-compatible server")
    # Local servers (vLLM, Ollama, llama.cpp) take any key; the SDK insists on one.
    return openai.AsyncOpenAI(base_url=options.base_url, api_key=options.api_key or "not-needed")


def write_attempt_files(folder: Path, feature_patch: str, tests_patch: str, feature_md: str,
                        result: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feature.patch").write_text(feature_patch)
    (folder / "tests.patch").write_text(tests_patch)
    (folder / "feature.md").write_text(feature_md)
    (folder / "result.json").write_text(json.dumps(result, indent=2, default=str))


async def _no_step(name: str) -> None:
    return None


async def run_attempt(task: Task, options: GenerateOptions, folder: Path, attempt: int = 1,
                      client: openai.AsyncOpenAI | None = None,
                      on_step: Callable[[str], Awaitable[None]] = _no_step) -> AttemptResult:
    """Run one attempt and write its folder. Raises StepError for what the user must fix first
    (no repository, no model endpoint, unknown feature); a failed attempt is a result, not an error.
    `on_step` is awaited as each generation step ("prompt", "agent", "validate") begins."""
    started = time.monotonic()
    await on_step("prompt")
    prompt = build_prompt(task, options.feature)
    source = repo_source(task, options.repo_path)
    await on_step("agent")
    client = client or make_client(options)
    price, token_limit, _ = spending(options)
    limits = AgentLimits(step_limit=options.step_limit, cost_limit_usd=options.cost_limit_usd,
                         timeout_s=options.timeout_s, network=options.agent_network, price=price,
                         token_limit=token_limit)
    sandbox = await asyncio.to_thread(proc.agent_sandbox, options.backend)
    with tempfile.TemporaryDirectory(prefix="repo-pilot-gen-") as tmp:
        workspace = Path(tmp) / "repo"
        base = await asyncio.to_thread(checkout_base, source, task.base_commit, workspace)
        agent = await run_agent(client, options.model, SYSTEM, prompt.prompt, workspace, limits,
                                trajectory_path=folder / "trajectory.json", sandbox=sandbox)
        split = split_diff(await asyncio.to_thread(diff_against_base, workspace, base))
        written_md = workspace / "feature.md"  # an agent that wrote the file instead of submitting it
        feature_md = agent.feature_md or (written_md.read_text() if written_md.is_file() else "")
    result = AttemptResult(attempt, folder, prompt, agent, split, None, feature_md)
    if not agent.submitted:
        result.reasons.append(f"agent did not submit ({agent.stop_reason}{': ' + agent.error if agent.error else ''})")
    if split.failure:
        result.reasons.append(split.failure)
    else:
        await on_step("validate")
        result.validation = await asyncio.to_thread(
            validate_patches, task, source, split.feature_patch, split.tests_patch, backend=options.backend,
            min_conflicts=options.min_conflicts, timeout=options.test_timeout_s, uv_cache_dir=options.uv_cache_dir,
            **_proof_options(options))
        if not result.validation.valid:
            result.reasons.append(result.validation.reason)
        if not agent.submitted:  # a feature the agent never vouched for is not a benchmark feature
            result.validation.valid = False
    if not feature_md.strip() and result.validation is not None and result.validation.valid:
        result.validation.valid = False
        result.reasons.append("no feature.md: the agent submitted no description")
    result.duration = time.monotonic() - started
    write_attempt_files(folder, split.feature_patch, split.tests_patch, feature_md, result.to_dict())
    return result


def _proof_options(options: GenerateOptions) -> dict[str, Any]:
    return {"mutants": options.mutants, "min_mutation_score": options.min_mutation_score,
            "all_proofs": options.all_proofs}


def validation_only(task: Task, options: GenerateOptions, feature_patch: str, tests_patch: str,
                    folder: Path | None = None) -> ValidationResult:
    """Validate an existing patch pair; with `folder`, write its result.json there."""
    source = repo_source(task, options.repo_path)
    result = validate_patches(task, source, feature_patch, tests_patch, backend=options.backend,
                              min_conflicts=options.min_conflicts, timeout=options.test_timeout_s,
                              uv_cache_dir=options.uv_cache_dir, **_proof_options(options))
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return result
