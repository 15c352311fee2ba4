"""The `llm` engine: the Engine port on any OpenAI-compatible model.

Calls, retries, budget and recording live in `llm_client.ModelCaller`; prompt texts and answer
shapes in `prompts`; the repository scan in `scan`; edit blocks in `shared.policy.edits`. This module
decides what to ask for each step and what to do with the answers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import openai

from shared.adapters.git import run_git
from shared.common.settings import Settings
from shared.engines import prompts as p
from shared.engines.llm_answers import combine_review_samples, review_scores
from shared.engines.llm_budget import Budget, Ledger
from shared.engines.llm_client import DEFAULT_PRICES, ModelCaller, RetryPolicy
from shared.engines.llm_endpoint import Endpoint, endpoint
from shared.engines.prompts import TEST_KINDS, TestKind
from shared.engines.rules.facts import list_files
from shared.engines.rules.project import detect as detect_project
from shared.engines.scan import render_scan, scan_repo
from shared.events import Improvement
from shared.events.run import LlmCallRecorded
from shared.policy.edits import Edit, FailedEdit, UnsafePath, apply_edits, resolve_inside
from shared.common.fs import is_inside, write_inside
from shared.ports.engine import (
    REVIEW_DIMENSIONS,
    Analysis,
    GeneratedTests,
    Implementation,
    ModelReview,
)
from shared.ports.errors import ChangeRejectedError, StepError

FILE_CHARS = 8_000  # per file sent with an improvement
FILES_TOTAL_CHARS = 40_000
DOCS_CHARS = 12_000  # analysis docs sent to the suggester
DIFF_CHARS = 30_000
REVIEW_SAMPLES = 3


class LlmEngine:
    """Engine backed by a chat-completions model. One instance per run: the budget and the
    recorded calls belong to the instance."""

    name = "llm"

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        budget: Budget | None = None,
        *,
        max_edit_retries: int = 2,
        max_format_retries: int = 2,
        replay: dict[str, str] | None = None,
        prices: dict[str, tuple[float, float]] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        ledger: Ledger | None = None,
        endpoint: Endpoint | None = None,
        answer_cap: int = 16_384,
    ):
        """`ledger` is the run's budget shared with its other engines; without one, `budget`
        makes a ledger of this engine's own. `endpoint` defaults to the client's base URL."""
        self.max_edit_retries = max_edit_retries
        self.caller = ModelCaller(
            client=client,
            model=model,
            ledger=ledger or Ledger(budget or Budget()),
            endpoint=endpoint,
            retry=retry or RetryPolicy(),
            max_format_retries=max_format_retries,
            replay=dict(replay or {}),
            prices=dict(prices if prices is not None else DEFAULT_PRICES),
            timeout=timeout,
            answer_cap=answer_cap,
        )

    @classmethod
    def from_settings(cls, settings: Settings, replay: dict[str, str] | None = None, **kw: Any) -> LlmEngine:
        """An engine for one run from the process settings (OPENAI_*, REPO_PILOT_LLM_*, the run budget)."""
        # Local servers (Ollama, llama.cpp, vLLM) need no key, but the SDK insists on one.
        client = openai.AsyncOpenAI(api_key=settings.openai_api_key or "not-needed", base_url=settings.openai_base_url)
        budget = Budget(max_tokens=settings.run_token_budget, max_cost_usd=settings.run_cost_budget_usd)
        kw.setdefault("endpoint", endpoint_for(settings))
        kw.setdefault("answer_cap", settings.llm_answer_tokens)
        return cls(client, settings.openai_model, budget, replay=replay, **kw)

    def drain_calls(self) -> list[LlmCallRecorded]:
        return self.caller.drain()

    # -- analyze ---------------------------------------------------------------------------

    async def analyze(self, repo: Path) -> Analysis:
        """The three documents; one or two the model left out are written as a note saying so."""

        scan = scan_repo(repo)
        answer = await self.caller.ask(
            "analyze", [p.system("analyze", p.ANALYZE), p.user(render_scan(scan))], p.AnalysisAnswer
        )
        docs = answer.model_dump()
        missing = [name for name, text in docs.items() if not text.strip()]
        for name in missing:
            docs[name] = f"# {name.capitalize()}\n\n(The model did not write this document.)\n"
        if missing:
            self.caller.note("analyze", f"the model did not write: {', '.join(missing)}")
        return Analysis(**docs, stats=scan.stats)

    # -- suggest ---------------------------------------------------------------------------

    async def suggest(self, repo: Path, analysis: Analysis, categories: list[str]) -> list[Improvement]:
        """2–4 improvements per category, the categories asked concurrently; ids `<category>-<n>`."""
        listing = "\n".join(scan_repo(repo, per_file=0, total=0).listing)
        context = "\n\n".join(
            [
                "# specification.md",
                analysis.specification[:DOCS_CHARS],
                "# architecture.md",
                analysis.architecture[:DOCS_CHARS],
                "# graph.md",
                analysis.graph[:DOCS_CHARS],
                "# Files",
                listing,
            ]
        )
        results = await asyncio.gather(
            *(self._suggest_one(repo, c, context) for c in categories), return_exceptions=True
        )
        for result in results:  # every category ran to the end, so all calls are recorded
            if isinstance(result, BaseException):
                raise result
        return [imp for result in results for imp in result]

    async def _suggest_one(self, repo: Path, category: str, context: str) -> list[Improvement]:
        """Fewer ideas than asked are taken with a note on the call; none at all skips the category
        with the model's reason. Ideas naming paths outside the repository are dropped (noted),
        and asked again only when that leaves none."""
        dropped: list[str] = []

        def check(answer: p.SuggestAnswer) -> p.SuggestAnswer:
            dropped.clear()
            kept = []
            for idea in answer.improvements:
                outside = [path for path in idea.files if not is_inside(repo, path)]
                if outside:
                    dropped.append(f"{idea.title!r} (names {', '.join(outside)})")
                else:
                    kept.append(idea)
            if answer.improvements and not kept:
                raise ValueError(
                    "files must be relative paths inside the repository; every idea named a path "
                    "outside it: " + "; ".join(dropped)
                )
            return answer.model_copy(update={"improvements": kept})

        purpose = f"suggest:{category}"
        body = p.SUGGEST.format(category=category, guide=p.CATEGORY_GUIDE.get(category, category))
        answer = await self.caller.ask(
            purpose, [p.system(purpose, body), p.user(context)], p.SuggestAnswer, check
        )
        notes = [f"dropped, path outside the repository: {'; '.join(dropped)}"] if dropped else []
        if not answer.improvements:
            notes.append(f"category {category} skipped: the model suggested nothing"
                         + (f" ({answer.reason})" if answer.reason else ""))
        elif len(answer.improvements) < 2:
            notes.append(f"accepted {len(answer.improvements)} improvement where 2 to 4 were asked"
                         + (f" ({answer.reason})" if answer.reason else ""))
        if notes:
            self.caller.note(purpose, "; ".join(notes))
        return [
            Improvement(
                id=f"{category}-{n}",
                category=category,
                title=idea.title,
                rationale=idea.rationale or idea.changes or idea.title,
                files=idea.files,
                changes=idea.changes,
            )
            for n, idea in enumerate(answer.improvements[:4], start=1)
        ]

    # -- implement -------------------------------------------------------------------------

    async def implement(self, repo: Path, improvement: Improvement) -> Implementation:
        """Ask for edit blocks, apply them, resend only the failed ones (bounded). On rejection the
        working copy is put back as it was."""
        purpose = f"implement:{improvement.id}"
        task = (
            f"# Improvement {improvement.id} ({improvement.category}): {improvement.title}\n"
            f"Why: {improvement.rationale}\nWhat to change: {improvement.changes or '(your choice)'}\n"
        )
        # File reads and the listing's git run off the event loop: other steps' messages wait on it.
        paths = improvement.files or (await asyncio.to_thread(scan_repo, repo, per_file=0, total=0)).listing[:50]
        context = await asyncio.to_thread(self._files_context, repo, paths)
        messages = [p.system(purpose, p.IMPLEMENT), p.user(task + "\n" + context)]
        snapshot = _Snapshot(repo)
        try:
            answer = await self.caller.ask(purpose, messages, p.ImplementAnswer)
            if not answer.edits:
                raise ChangeRejectedError(
                    f"the model declined {improvement.id}: {answer.summary or 'no reason given'}"
                )
            changed: list[str] = []
            failed = self._apply(repo, answer.edits, snapshot, changed)
            for _ in range(self.max_edit_retries):
                if not failed:
                    break
                retry = p.user(task + "\n" + p.IMPLEMENT_RETRY + "\n" + self._failed_context(repo, failed))
                answer = await self.caller.ask(
                    purpose, [p.system(purpose, p.IMPLEMENT), retry], p.ImplementAnswer
                )
                failed = self._apply(repo, answer.edits, snapshot, changed) if answer.edits else failed
            if failed:
                errors = "; ".join(f.error for f in failed)
                raise ChangeRejectedError(
                    f"{len(failed)} edit(s) for {improvement.id} still did not apply after "
                    f"{self.max_edit_retries} retries: {errors}"
                )
            if not changed:
                raise ChangeRejectedError(f"the edits for {improvement.id} changed nothing")
        except BaseException:  # rejected, model failure or cancellation: leave no half-applied change
            snapshot.restore()
            raise
        return Implementation(files=sorted(set(changed)), summary=answer.summary or improvement.title)

    def _apply(
        self, repo: Path, edits: list[Edit], snapshot: _Snapshot, changed: list[str]
    ) -> list[FailedEdit]:
        try:
            for edit in edits:
                snapshot.remember(edit.path)
        except UnsafePath as exc:
            raise ChangeRejectedError(f"edit rejected, path outside the repository: {exc}") from exc
        result = apply_edits(repo, edits)
        changed.extend(result.applied)
        return result.failed

    def _files_context(self, repo: Path, paths: list[str], total: int = FILES_TOTAL_CHARS) -> str:
        blocks = []
        for rel in dict.fromkeys(paths):
            try:
                path = resolve_inside(repo, rel)
            except UnsafePath as exc:
                raise ChangeRejectedError(
                    f"the improvement names a path outside the repository: {exc}"
                ) from exc
            if not path.is_file():
                blocks.append(p.file_block(rel, "", " (does not exist yet)"))
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            budget = min(FILE_CHARS, max(total, 0))
            note = f" (first {budget} of {len(text)} characters)" if len(text) > budget else ""
            blocks.append(p.file_block(rel, text[:budget], note))
            total -= budget
        return "# Current files\n\n" + "\n\n".join(blocks)

    def _failed_context(self, repo: Path, failed: list[FailedEdit]) -> str:
        listed = "\n".join(f"- block {i}: {f.error}" for i, f in enumerate(failed, start=1))
        return (
            self._files_context(repo, [f.edit.path for f in failed])
            + f"\n\n# Failed blocks\n{listed}\n```json\n{p.edits_json([f.edit for f in failed])}\n```"
        )

    # -- review ----------------------------------------------------------------------------

    async def review(self, repo: Path, base_sha: str, head_sha: str, signals: dict[str, Any]) -> ModelReview:
        """Scores on the six dimensions; up to three samples when the budget allows, overall = median."""
        diff = await _git_diff(repo, base_sha, head_sha)
        note = f"\n(diff cut at {DIFF_CHARS} of {len(diff)} characters)" if len(diff) > DIFF_CHARS else ""
        body = (
            f"# Signals\n```json\n{json.dumps(signals, indent=1, default=str)[:8000]}\n```\n\n"
            f"# Diff {base_sha[:12]}..{head_sha[:12]}\n```diff\n{diff[:DIFF_CHARS]}\n```{note}"
        )
        messages = [p.system("review", p.REVIEW), p.user(body)]

        def check(answer: p.ReviewAnswer) -> p.ReviewAnswer:
            scores, _ = review_scores(answer.scores, REVIEW_DIMENSIONS)
            if answer.overall is None and not scores:
                raise ValueError(
                    "give an overall score from 1 to 10 and scores for: " + ", ".join(REVIEW_DIMENSIONS)
                )
            return answer

        def ask() -> Any:
            return self.caller.ask("review", messages, p.ReviewAnswer, check)

        # The samples do not depend on each other: asked together they cost one call's wait, not three.
        tokens, cost = self.caller.ceiling(messages, p.ReviewAnswer)
        if self.caller.can_afford(REVIEW_SAMPLES * tokens, REVIEW_SAMPLES * cost):
            samples, more = [], REVIEW_SAMPLES
        else:  # a tight budget: one sample says what a sample costs, then as many more as that allows
            before = self.caller.spent.tokens, self.caller.spent.cost_usd
            samples = [await ask()]
            tokens, cost = self.caller.spent.tokens - before[0], self.caller.spent.cost_usd - before[1]
            more = next(n for n in range(REVIEW_SAMPLES - 1, -1, -1)
                        if n == 0 or self.caller.can_afford(n * tokens, n * cost))
        answers = await asyncio.gather(*(ask() for _ in range(more)), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, StepError):
                raise answer
        # A sample that failed is a refinement lost (its recorded calls say what happened), unless none came.
        samples += [a for a in answers if not isinstance(a, BaseException)]
        if not samples:
            raise answers[0]
        # Sorted: which concurrent answer arrived first must not change the verdict or its summary.
        samples.sort(key=lambda s: s.model_dump_json())
        review = combine_review_samples(samples)
        missing = [d for d in REVIEW_DIMENSIONS if d not in review.scores]
        if missing:
            self.caller.note("review", f"not scored by the model: {', '.join(missing)} (signals used)")
        return review

    # -- write_tests -----------------------------------------------------------------------

    async def write_tests(
        self, repo: Path, improvements: list[Improvement], categories: list[str]
    ) -> GeneratedTests:
        """One test file per category that has improvements, in the repository's ecosystem:
        `tests/repo_pilot/test_<category>.py` (pytest), `.repo-pilot/checks/<category>.cjs`
        (node:test) or `tests/repo_pilot_<category>.rs` (cargo); none for another language."""
        language = detect_project(repo, await asyncio.to_thread(list_files, repo)).language or "python"
        kind = TEST_KINDS.get(language)
        if kind is None:
            self.caller.note("write_tests", f"no generated tests for a {language} repository (no runner here)")
            return GeneratedTests(groups={})
        wanted = [c for c in categories if any(i.category == c for i in improvements)]
        results = await asyncio.gather(
            *(self._tests_for(repo, c, [i for i in improvements if i.category == c], kind) for c in wanted),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return GeneratedTests(
            groups={c: {kind.path.format(category=c): content} for c, content in zip(wanted, results, strict=True)}
        )

    async def _tests_for(self, repo: Path, category: str, improvements: list[Improvement], kind: TestKind) -> str:
        def check(answer: p.TestsAnswer) -> p.TestsAnswer:
            if kind.language == "python":
                try:
                    compile(answer.content, f"test_{category}.py", "exec")
                except SyntaxError as exc:
                    raise ValueError(f"content is not valid Python: {exc}") from None
            if kind.marker not in answer.content:
                raise ValueError(f"content has no tests ({kind.marker}...)")
            return answer

        purpose = f"write_tests:{category}"
        listed = "\n".join(
            f"- {i.id}: {i.title}: {i.changes or i.rationale} (files: {', '.join(i.files)})"
            for i in improvements
        )
        files = [f for i in improvements for f in i.files]
        try:
            context = await asyncio.to_thread(self._files_context, repo, files, 24_000)
        except ChangeRejectedError as exc:
            raise StepError(f"{purpose}: {exc.reason}") from exc
        messages = [
            p.system(purpose, kind.prompt.format(category=category)),
            p.user(f"# Improvements\n{listed}\n\n{context}"),
        ]
        return (await self.caller.ask(purpose, messages, p.TestsAnswer, check)).content


def endpoint_for(settings: Settings) -> Endpoint:
    """The process's record of the configured endpoint (structured-output mode, concurrency)."""
    return endpoint(settings.openai_base_url, mode=settings.llm_structured, concurrency=settings.llm_concurrency)


async def _git_diff(repo: Path, base: str, head: str) -> str:
    done = await asyncio.to_thread(run_git, repo, "diff", f"{base}..{head}")
    if done.returncode != 0:
        raise StepError(f"review: cannot diff {base[:12]}..{head[:12]}: {done.stderr.strip()}")
    return done.stdout


class _Snapshot:
    """The original bytes of every file the edits touch, so a rejected change can be undone."""

    def __init__(self, repo: Path):
        self.repo = repo
        self.saved: dict[Path, bytes | None] = {}

    def remember(self, rel: str) -> None:
        path = resolve_inside(self.repo, rel)
        if path not in self.saved:
            self.saved[path] = path.read_bytes() if path.is_file() else None

    def restore(self) -> None:
        for path, content in self.saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                write_inside(self.repo, path.relative_to(self.repo.resolve()).as_posix(), content)
