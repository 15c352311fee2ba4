"""One attempt in three steps, each its own bead: `prompt` (FeaturePromptBuilt), `agent` (the agent
in a fresh checkout, its diff split: FeatureGenerated) and `validate` (proofs and merges, the
attempt folder written: FeatureValidated). A step takes what the steps before it produced, as
events, so the generator service runs each on its own delivery; `run_attempt` chains them in one
process for `--dataset`.

The folder holds feature.patch, tests.patch, feature.md, result.json (validity, conflicts, test
counts, cost, steps, duration) and trajectory.json.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from shared.adapters import task_commands
from shared.adapters.task_dir import load_task
from shared.adapters.workspace import checkout_base, diff_against_base
from shared.common.tasks import in_thread
from shared.engines.generator.agent import AgentLimits, model_price, run_agent
from shared.engines.generator.validate import ValidationResult, validate_patches
from shared.events.gen import (
    DEFAULT_MIN_MUTATION_SCORE,
    DEFAULT_MUTANTS,
    FeatureGenerated,
    FeatureGenerationRequested,
    FeaturePromptBuilt,
    FeatureValidated,
)
from shared.policy.generation.prompt import SYSTEM, build_prompt
from shared.policy.generation.split import split_diff
from shared.policy.generation.task import Task
from shared.policy.generation.verdict import Backend
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
    min_mutation_score: float = DEFAULT_MIN_MUTATION_SCORE
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


def options_for(request: FeatureGenerationRequested, settings: Any) -> GenerateOptions:
    """The attempt's options: the request's values, the endpoint and default model from settings (pure)."""
    return GenerateOptions(
        repo_path=request.repo_path, model=request.model or settings.openai_model, backend=request.backend,
        feature=request.feature, step_limit=request.step_limit, cost_limit_usd=request.cost_limit_usd,
        min_conflicts=request.min_conflicts, base_url=settings.openai_base_url, api_key=settings.openai_api_key,
        agent_network=request.agent_network, uv_cache_dir=settings.home / "uv-cache", mutants=request.mutants,
        min_mutation_score=request.min_mutation_score, all_proofs=request.all_proofs,
        price=tuple(request.price) if request.price else None, token_limit=request.token_limit)


def build_prompt_step(task: Task, options: GenerateOptions) -> FeaturePromptBuilt:
    """The `prompt` step: the agent's prompt; StepError when the task names no usable repository."""
    prompt = build_prompt(task, options.feature)
    repo_source(task, options.repo_path)  # the user's to fix before an agent is started
    return prompt


async def agent_step(task: Task, options: GenerateOptions, prompt: FeaturePromptBuilt, folder: Path,
                     client: openai.AsyncOpenAI | None = None) -> FeatureGenerated:
    """The `agent` step: the agent works in a fresh checkout at the base commit (its trajectory goes
    to the attempt folder) and its diff is split into feature / tests. StepError when there is no
    model endpoint or the base cannot be checked out; an agent that fails is a result."""
    started = time.monotonic()
    source = repo_source(task, options.repo_path)
    client = client or make_client(options)
    price, token_limit, _ = spending(options)
    limits = AgentLimits(step_limit=options.step_limit, cost_limit_usd=options.cost_limit_usd,
                         timeout_s=options.timeout_s, network=options.agent_network, price=price,
                         token_limit=token_limit)
    sandbox = await asyncio.to_thread(task_commands.agent_sandbox, options.backend)
    with tempfile.TemporaryDirectory(prefix="repo-pilot-gen-") as tmp:
        workspace = Path(tmp) / "repo"
        base = await asyncio.to_thread(checkout_base, source, task.base_commit, workspace)
        agent = await run_agent(client, options.model, SYSTEM, prompt.prompt, workspace, limits,
                                trajectory_path=folder / "trajectory.json", sandbox=sandbox)
        split = split_diff(await asyncio.to_thread(diff_against_base, workspace, base))
        written_md = workspace / "feature.md"  # an agent that wrote the file instead of submitting it
        feature_md = agent.feature_md or (written_md.read_text() if written_md.is_file() else "")
    return FeatureGenerated(
        feature_patch=split.feature_patch, tests_patch=split.tests_patch, feature_md=feature_md,
        cost_usd=agent.cost_usd, steps=agent.steps, trajectory_path=str(folder / "trajectory.json"),
        submitted=agent.submitted, stop_reason=agent.stop_reason, agent_error=agent.error,
        prompt_tokens=agent.prompt_tokens, completion_tokens=agent.completion_tokens,
        feature_files=split.feature_files, test_files=split.test_files, dropped=split.dropped,
        split_failure=split.failure or "", duration_s=time.monotonic() - started)


@dataclass
class Verdict:
    """The `validate` step's outcome: the event and result.json's content."""

    payload: FeatureValidated
    result: dict[str, Any]

    @property
    def valid(self) -> bool:
        return bool(self.result["valid"])


async def validate_step(task: Task, options: GenerateOptions, prompt: FeaturePromptBuilt,
                        generated: FeatureGenerated, folder: Path, attempt: int) -> Verdict:
    """The `validate` step: the proofs and merges of the generated pair (unless its split already
    failed), then the attempt folder. A feature the agent never submitted or described is invalid."""
    started = time.monotonic()
    reasons: list[str] = []
    validation: ValidationResult | None = None
    if not generated.submitted:
        why = generated.stop_reason + (f": {generated.agent_error}" if generated.agent_error else "")
        reasons.append(f"agent did not submit ({why})")
    if generated.split_failure:
        reasons.append(generated.split_failure)
    else:
        # in_thread, not to_thread: a stopping service's cancel must reach the task's test runs
        validation = await in_thread(
            validate_patches, task, repo_source(task, options.repo_path), generated.feature_patch,
            generated.tests_patch, backend=options.backend, min_conflicts=options.min_conflicts,
            timeout=options.test_timeout_s, uv_cache_dir=options.uv_cache_dir, **_proof_options(options))
        if not validation.valid:
            reasons.append(validation.reason)
        if not generated.submitted:  # a feature the agent never vouched for is not a benchmark feature
            validation.valid = False
    if not generated.feature_md.strip() and validation is not None and validation.valid:
        validation.valid = False
        reasons.append("no feature.md: the agent submitted no description")
    valid = validation is not None and validation.valid
    reason = "; ".join(reasons) if reasons else (validation.reason if validation else "")
    result = {
        "attempt": attempt,
        "valid": valid,
        "reason": reason,
        "cost_usd": None if generated.cost_usd is None else round(generated.cost_usd, 6),
        "cost_note": "" if generated.cost_usd is not None else "unpriced model: limited by tokens",
        "steps": generated.steps,
        "agent_stop": generated.stop_reason,
        "agent_error": generated.agent_error,
        "tokens": {"prompt": generated.prompt_tokens, "completion": generated.completion_tokens},
        "duration_s": round(generated.duration_s + time.monotonic() - started, 3),
        "files": {"feature": generated.feature_files, "tests": generated.test_files, "dropped": generated.dropped},
        "hotspots": [h.model_dump() for h in prompt.hotspots],
        "validation": validation.to_dict() if validation else None,
    }
    write_attempt_files(folder, generated.feature_patch, generated.tests_patch, generated.feature_md, result)
    if validation is None:
        payload = FeatureValidated(tests_passed=False, valid=False, reason=reason)
    else:
        payload = validation.to_payload().model_copy(update={"reason": reason} if reasons else {})
    return Verdict(payload, result)


async def run_attempt(task: Task, options: GenerateOptions, folder: Path, attempt: int = 1,
                      client: openai.AsyncOpenAI | None = None) -> Verdict:
    """The three steps in this process (`--dataset`); the service runs them one delivery each.
    Raises StepError for what the user must fix first (no repository, no model endpoint, unknown
    feature); a failed attempt is a result, not an error."""
    prompt = build_prompt_step(task, options)
    generated = await agent_step(task, options, prompt, folder, client)
    return await validate_step(task, options, prompt, generated, folder, attempt)


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


class Generator:
    """The FeatureGenerator port over the steps above (wired by `shared.app.bootstrap`): options
    from each request and the settings' endpoint; `client`, when given, is the agent's model client
    (tests point it at a scripted server)."""

    def __init__(self, settings: Any, client: openai.AsyncOpenAI | None = None):
        self.settings, self.client = settings, client

    def _load(self, request: FeatureGenerationRequested) -> tuple[Task, GenerateOptions, Path]:
        folder = Path(request.output_dir) / f"attempt_{request.attempt}"
        return load_task(Path(request.task_dir)), options_for(request, self.settings), folder

    async def build_prompt(self, request: FeatureGenerationRequested) -> FeaturePromptBuilt:
        task, options, _ = self._load(request)
        return build_prompt_step(task, options)

    async def generate(self, request: FeatureGenerationRequested, prompt: FeaturePromptBuilt) -> FeatureGenerated:
        task, options, folder = self._load(request)
        return await agent_step(task, options, prompt, folder, self.client)

    async def validate(self, request: FeatureGenerationRequested, prompt: FeaturePromptBuilt,
                       generated: FeatureGenerated) -> FeatureValidated:
        task, options, folder = self._load(request)
        return (await validate_step(task, options, prompt, generated, folder, request.attempt)).payload
