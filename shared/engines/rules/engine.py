"""RulesEngine: the offline, deterministic Engine (DESIGN section 4), built on ruff, bandit and templates."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

from shared.adapters.analyzers import (
    DEFAULT_SELECT,
    Finding,
    bandit_only,
    run_bandit,
    run_ruff,
    scan_secrets,
    target_version,
)
from shared.adapters.codemods import describe
from shared.adapters.tools_env import ToolsUnavailable, ensure_tools
from shared.common.pyparse import PARSE_LOCK
import shared.engines.rules.facts as facts_mod
from shared.adapters.ghostwriter import ghostwrite
from shared.adapters.project_checks import conform_generated
from shared.adapters.target_deps import declared_names, read_declared, read_dependency_files
from shared.adapters.target_env import python_for
from shared.engines.rules.change_plan import PROPERTIES_HEADER, plan_change_tests
from shared.engines.rules.change_tests import ChangeTests, render
from shared.engines.rules.codemods import ADDS_DEPENDENCY, apply_codemod, codemod_for, codemod_improvements
from shared.engines.rules.lint import LINT_SELECT, apply_lint
from shared.engines.rules.sites import holding, judge
from shared.policy.behaviour import changes_behaviour
from shared.engines.rules.validate import OwnTests, compare, restore, untracked_files
from shared.engines.rules.analyze import analyze_facts
from shared.engines.rules.implement import implement as implement_improvement
from shared.engines.rules.suggest import suggest_all
from shared.engines.rules.smoke import generate
from shared.events import Improvement
from shared.events.run import CATEGORIES, LlmCallRecorded
from shared.ports.engine import Analysis, GeneratedTests, Implementation, ModelReview
from shared.ports.errors import ChangeRejectedError, StepError

log = logging.getLogger(__name__)


def _locked(fn, *args):
    """`fn(*args)` holding the process's parse lock (it parses Python with `ast`)."""
    with PARSE_LOCK:
        return fn(*args)


def collect_lint_findings(repo: Path, facts: facts_mod.RepoFacts) -> list[Finding]:
    """ruff's lint and modernisation families under the repository's own ruff configuration."""
    return run_ruff(
        repo, facts.python_files, LINT_SELECT, target_version(facts.requires_python), respect_config=True
    )


def collect_findings(repo: Path, facts: facts_mod.RepoFacts) -> list[Finding]:
    """ruff (DEFAULT_SELECT, extending the repository's own ruff configuration: what it ignores or
    leaves out is never proposed), bandit where it adds to ruff, and the secrets scan, sorted."""
    py = facts.python_files
    target = target_version(facts.requires_python)
    ruff = run_ruff(repo, py, DEFAULT_SELECT, target, respect_config=True)
    # bandit's B311 is ruff's S311: a rule the project ignores in ruff must not come back as bandit's
    bandit = bandit_only(run_bandit(repo, py), run_ruff(repo, py, DEFAULT_SELECT, target))
    return sorted([*ruff, *bandit, *scan_secrets(repo, facts.files)])


def lint_in_context(repo: Path, improvement: Improvement, requires: str | None) -> tuple[list[str], str]:
    """ruff's fixes for the improvement, with the sites where they would change behaviour held back
    (shared/policy/behaviour.py); raises ChangeRejectedError when every site is held."""
    codes = sorted((improvement.rule or "").partition(":")[2].split(","))
    files = [f for f in improvement.files if f.endswith(".py") and (repo / f).is_file()]
    found = run_ruff(repo, files, codes, target_version(requires), respect_config=True)
    held = [(f, v) for f, v in judge(repo, found) if not v.ok]
    if found and len(held) == len(found):
        raise ChangeRejectedError("behaviour-changing fix proposed, not applied: "
                                  + " | ".join(f"{f.code} {v.reason}" for f, v in held[:6]))  # fmt: skip
    with holding(repo, [f for f, _ in held]):
        files, summary = apply_lint(repo, improvement, requires)
    if held:
        summary += f"; left as is ({len(held)}): " + " | ".join(f"{f.code} {v.reason}" for f, v in held[:6])
    return files, summary


def codemod_in_context(repo: Path, improvement: Improvement, requires: str | None) -> Improvement:
    """The codemod improvement restricted to the files where every finding it removes is in a context
    that justifies the behaviour change (a codemod rewrites whole files); raises ChangeRejectedError
    when no file is left."""
    codemod = (improvement.rule or "").removeprefix("codemod:")
    files = [f for f in improvement.files if f.endswith(".py") and (repo / f).is_file()]
    found = [
        f
        for f in run_ruff(repo, files, DEFAULT_SELECT, target_version(requires))
        if codemod_for(f) == codemod
    ]
    verdicts = judge(repo, found, key=lambda f: codemod)
    refused = {f.path for f, v in verdicts if not v.ok}
    kept = [f for f in improvement.files if f not in refused]
    if not kept:
        raise ChangeRejectedError("behaviour-changing fix proposed, not applied: "
                                  + " | ".join(v.reason for _, v in verdicts if not v.ok)[:600])  # fmt: skip
    return improvement.model_copy(update={"files": kept})


class RulesEngine:
    """Same repository in, same analysis, suggestions, fixes and tests out; no model, no network."""

    name = "rules"

    def __init__(self, home: Path | None = None, tools_home: Path | None = None, sandbox: Any = None) -> None:
        # Why a category came back empty (e.g. no feature can be derived without a model), by category.
        self.notes: dict[str, str] = {}
        self.home = Path(home) if home else Path(tempfile.gettempdir()) / "repo-pilot-rules"
        if tools_home is None:  # constructed without wiring (scripts, tests): the configured place
            from shared.common.settings import Settings

            tools_home = Settings().tools_home
        self.tools_home = Path(tools_home)
        if sandbox is None:
            from shared.adapters.sandbox import LocalSandbox

            sandbox = LocalSandbox()
        self.own_tests = OwnTests(self.home, sandbox)

    def tools(self) -> Path:
        """The codemodder tools env, created on first use (raises ToolsUnavailable)."""
        return ensure_tools(self.tools_home)

    async def analyze(self, repo: Path) -> Analysis:
        return await asyncio.to_thread(_locked, lambda: analyze_facts(facts_mod.collect(Path(repo))))

    async def suggest(self, repo: Path, analysis: Analysis, categories: list[str]) -> list[Improvement]:
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown:
            raise StepError(f"unknown categories {unknown}", hint=f"choose from {', '.join(CATEGORIES)}")

        def run() -> list[Improvement]:
            facts = _locked(facts_mod.collect, Path(repo))
            findings = collect_findings(facts.root, facts)
            lint = collect_lint_findings(facts.root, facts)
            codemods, notes_in = [], {}
            if "security" in categories and any(codemod_for(f) for f in findings):
                try:
                    codemods = codemod_improvements(findings, describe(self.tools()))
                except (ToolsUnavailable, RuntimeError) as exc:
                    notes_in["security"] = (
                        f"Security codemods are unavailable: {exc}. Only ruff's own fixes are proposed."
                    )
            improvements, notes = suggest_all(facts, findings, list(categories), lint_findings=lint,
                                              security_first=codemods, notes_in=notes_in)  # fmt: skip
            self.notes = notes
            return improvements

        return await asyncio.to_thread(run)

    async def implement(self, repo: Path, improvement: Improvement) -> Implementation:
        """Apply one improvement; a behaviour-changing one is kept only when the repository's own tests
        pass with it alone (compared with the suite at the base, run once per run)."""
        repo = Path(repo)
        kind = (improvement.rule or "").partition(":")[0]
        validate = changes_behaviour(improvement.rule)
        if kind not in ("lint", "lint-unsafe", "codemod") and not validate:
            return await asyncio.to_thread(_locked, implement_improvement, repo, improvement)
        before = await self.own_tests.baseline(repo) if validate else None
        if before is not None and before.total == 0:
            raise ChangeRejectedError(f"{improvement.title}: {compare(before, before).reason}")
        untracked = untracked_files(repo)
        requires = (await asyncio.to_thread(_locked, facts_mod.collect, repo)).requires_python
        if kind == "codemod":
            try:
                env_dir = await asyncio.to_thread(self.tools)
            except ToolsUnavailable as exc:
                raise ChangeRejectedError(f"security codemods are unavailable: {exc}") from exc
            improvement = await asyncio.to_thread(_locked, codemod_in_context, repo, improvement, requires)
            files, summary = await asyncio.to_thread(apply_codemod, env_dir, repo, improvement, requires)
            dependency = ADDS_DEPENDENCY.get(improvement.rule.removeprefix("codemod:"))
            if dependency:  # kept only when the target's environment can install what it now needs
                py = await python_for(repo, self.home, self.own_tests.sandbox)
                if "failed" in py.note:
                    restore(repo, untracked)
                    raise ChangeRejectedError(f"{summary}, but the target's environment cannot install "
                                              f"`{dependency}`: {py.note}")  # fmt: skip
        elif kind in ("check", "fix"):
            done = await asyncio.to_thread(_locked, implement_improvement, repo, improvement)
            files, summary = done.files, done.summary
        else:
            files, summary = await asyncio.to_thread(_locked, lint_in_context, repo, improvement, requires)
        if before is not None:
            verdict = compare(before, await self.own_tests.changed(repo))
            if not verdict.ok:
                restore(repo, untracked)
                raise ChangeRejectedError(f"{summary}, but {verdict.reason}")
            summary += f"; {verdict.reason}"
        return Implementation(files=files, summary=summary)

    async def review(self, repo: Path, base_sha: str, head_sha: str, signals: dict[str, Any]) -> ModelReview:
        """A review from the signals alone (and `signals["tests"]`, a TestsCompleted dict, when present)."""
        from shared.policy.review import signal_assessment, signals_summary

        a = signal_assessment(signals, signals.get("tests"))
        return ModelReview(
            overall=a["score"],
            scores=a["scores"],
            issues=a["issues"],
            summary=signals_summary(a),
            samples=[a["score"]],
        )

    async def write_tests(
        self, repo: Path, improvements: list[Improvement], categories: list[str]
    ) -> GeneratedTests:
        """Smoke checks (smoke.py), plus per category the tests of the change:
        regression tests of what the fixes changed and ghostwriter property tests of the touched
        functions that do no I/O (change_tests.py)."""
        repo = Path(repo)
        facts = await asyncio.to_thread(_locked, facts_mod.collect, repo)
        generated = generate(facts, improvements, categories)
        if facts.language not in (None, "python"):  # the change tests below are pytest and Hypothesis
            return generated
        plans = await asyncio.to_thread(_locked, plan_change_tests, repo, facts, improvements)
        groups = {g: dict(files) for g, files in generated.groups.items()}
        # Only what the project declares for its tests: no Hypothesis unless it depends on it.
        hypothesis = "hypothesis" in declared_names(
            read_declared(read_dependency_files(repo), repo.resolve())
        )
        py = None
        for category in sorted(set(categories)):
            files = groups.setdefault(category, {})
            plan = plans.get(category, ChangeTests())
            text = render(category, plan, hypothesis=hypothesis)
            if text:
                files[f"tests/repo_pilot/test_{category}_change.py"] = text
            if plan.fuzz and hypothesis:
                py = py or await python_for(repo, self.home, self.own_tests.sandbox)
                written = await ghostwrite(self.own_tests.sandbox, repo, py.executable, plan.fuzz)
                props = [t for _, t in sorted(written.items()) if not t.startswith("#error")]
                if props:
                    files[f"tests/repo_pilot/test_{category}_properties.py"] = (
                        PROPERTIES_HEADER + "\n\n".join(props)
                    )
            if not files:
                groups.pop(category)
        return GeneratedTests(groups=await self._in_project_style(repo, groups))

    async def _in_project_style(
        self, repo: Path, groups: dict[str, dict[str, str]]
    ) -> dict[str, dict[str, str]]:
        """Each group's files through the project's own ruff and formatter; a file that still has
        findings under the project's configuration is left out (logged with them)."""
        out = {}
        for group, files in groups.items():
            kept, dropped = await conform_generated(repo, files, self.own_tests.sandbox)
            for rel, why in dropped.items():
                log.warning(
                    "generated test %s left out: the project's ruff configuration reports %s", rel, why
                )
            if kept:
                out[group] = kept
        return out

    def drain_calls(self) -> list[LlmCallRecorded]:
        return []
