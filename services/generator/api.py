"""Python API of the generator: generate a feature for a task, or validate an existing pair.

    result = generate_feature("dataset/x_task/task1", model_name="gpt-4.1", backend="local")
    result.success, result.feature_patch, result.tests_patch, result.agent_cost

    check = validate_generated_feature("dataset/x_task/task1", "feature.patch", "tests.patch")
    check.valid, check.tests, check.conflicts
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from services.generator.counts import TestCounts
from services.generator.job import AttemptResult, GenerateOptions, run_attempt, validation_only
from services.generator.task import load_task
from services.generator.proofs import TestRun
from services.generator.validate import Backend
from shared.events.gen import ConflictReport


@dataclass
class GenerationResult:
    success: bool
    feature_patch: str
    tests_patch: str
    feature_md: str
    agent_cost: float | None  # None: the model has no price
    agent_steps: int
    reason: str
    attempt_dir: Path
    conflicts: list[ConflictReport] = field(default_factory=list)
    test_counts: TestCounts = field(default_factory=TestCounts)
    attempt: AttemptResult | None = None


@dataclass
class FeatureValidation:
    valid: bool
    reason: str
    tests: TestRun
    conflicts: list[ConflictReport]

    @property
    def conflicting_features(self) -> list[int]:
        return [c.feature for c in self.conflicts if c.status == "conflict"]


def _text(value: str | Path) -> str:
    """Patch text given inline or as a path to a file."""
    if isinstance(value, Path) or (isinstance(value, str) and "\n" not in value and Path(value).is_file()):
        return Path(value).read_text()
    return str(value)


async def agenerate_feature(task_dir: str | Path, model_name: str | None = None, backend: Backend = "auto", *,
                            repo_path: str | Path | None = None, output_dir: str | Path | None = None,
                            attempt: int = 1, feature: int | None = None, step_limit: int = 30,
                            cost_limit: float = 1.0, min_conflicts: int = 1, timeout_s: float = 1800.0,
                            base_url: str | None = None, api_key: str | None = None) -> GenerationResult:
    """Run one attempt; `success` means the new feature is valid (tests pass, enough conflicts).

    The model endpoint defaults to OPENAI_BASE_URL / OPENAI_API_KEY, the model to OPENAI_MODEL.
    Raises StepError for what must be fixed first (bad task dir, no repository, no endpoint).
    """
    from shared.common.settings import Settings

    settings = Settings()
    task = load_task(Path(task_dir))
    options = GenerateOptions(
        repo_path=str(repo_path) if repo_path else None, model=model_name or settings.openai_model,
        backend=backend, feature=feature, step_limit=step_limit, cost_limit_usd=cost_limit,
        min_conflicts=min_conflicts, timeout_s=timeout_s,
        base_url=base_url or settings.openai_base_url, api_key=api_key or settings.openai_api_key)
    out = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="repo-pilot-generate-"))
    result = await run_attempt(task, options, out / f"attempt_{attempt}", attempt)
    validation = result.validation
    return GenerationResult(
        success=result.success, feature_patch=result.split.feature_patch, tests_patch=result.split.tests_patch,
        feature_md=result.feature_md, agent_cost=result.agent.cost_usd, agent_steps=result.agent.steps,
        reason=result.reason, attempt_dir=result.folder,
        conflicts=list(validation.conflicts) if validation else [],
        test_counts=validation.tests.counts if validation else TestCounts(), attempt=result)


def generate_feature(task_dir: str | Path, model_name: str | None = None, backend: Backend = "auto",
                     **kwargs) -> GenerationResult:
    """Blocking form of `agenerate_feature` (same arguments)."""
    return asyncio.run(agenerate_feature(task_dir, model_name, backend, **kwargs))


def validate_generated_feature(task_dir: str | Path, feature_patch: str | Path, tests_patch: str | Path, *,
                               repo_path: str | Path | None = None, backend: Backend = "auto",
                               min_conflicts: int = 1, timeout_s: float = 900.0) -> FeatureValidation:
    """Tests and conflicts of a patch pair (text or file paths) against the task's features."""
    task = load_task(Path(task_dir))
    options = GenerateOptions(repo_path=str(repo_path) if repo_path else None, backend=backend,
                              min_conflicts=min_conflicts, test_timeout_s=timeout_s)
    result = validation_only(task, options, _text(feature_patch), _text(tests_patch))
    return FeatureValidation(result.valid, result.reason, result.tests, result.conflicts)
