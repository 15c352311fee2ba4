"""In-memory fakes of the ports (shared/ports/), for handler unit tests: no servers.

Each implements its Protocol (checked in tests/contract/) and keeps what a test wants to assert
on: the store its events and tracking rows, the workspace which working copies are still there,
the forge what it published, opened and merged, the sandbox which commands it was asked to run.
The workspace and changes keep repositories in memory (tests/support/fake_repos.py, no git);
working copies are plain directories because engines edit files in them. No fake runs git, ruff
or pytest, except the forge's default `head` (the contract suite's copies are git clones).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.adapters.git import git
from shared.common.settings import Settings
from shared.events import Envelope, Improvement
from shared.events.gen import FeatureGenerated, FeatureGenerationRequested, FeaturePromptBuilt, FeatureValidated
from shared.events.run import LlmCallRecorded, TestGroupResult
from shared.policy.run import RunContext
from shared.engines.generator.attempt import Generator
from shared.ports.deps import Deps
from shared.ports.engine import Analysis, GeneratedTests, Implementation, ModelReview
from shared.ports.errors import AlreadyProcessed, ChangeRejectedError, ConcurrencyError, StepError
from shared.ports.forge import MergeRequest
from shared.ports.sandbox import SandboxResult
from shared.ports.store import Tracking
from tests.support.fake_repos import FakeChanges, FakeWorkspace, Repos
from shared.ports.suites import Suite

# -- event store -------------------------------------------------------------------------------------


class InMemoryEventStore:
    """The EventStore port in a list: one lock serialises appends, as the Postgres store's
    advisory lock does, so positions are handed out in commit order."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self.tracking: set[tuple[str, uuid.UUID]] = set()
        self._lock = asyncio.Lock()

    async def append(
        self,
        stream_id: str,
        events: Sequence[Envelope],
        expected_version: int | None = None,
        *,
        tracking: Tracking | None = None,
    ) -> list[Envelope]:
        async with self._lock:
            return self._append([(stream_id, events)], expected_version, tracking)

    async def ping(self) -> None:
        return None

    async def append_streams(
        self, groups: Sequence[tuple[str, Sequence[Envelope]]], *, tracking: Tracking
    ) -> list[Envelope]:
        async with self._lock:
            return self._append(groups, None, tracking)

    def _append(self, groups, expected_version, tracking) -> list[Envelope]:
        # Every check before any write: all or nothing, as one transaction.
        if tracking is not None and tuple(tracking) in self.tracking:
            raise AlreadyProcessed(*tracking)
        if expected_version is not None:
            stream_id = groups[0][0]
            actual = self._version(stream_id)
            if actual != expected_version:
                raise ConcurrencyError(stream_id, expected_version, actual)
        seen = {e.event_id for e in self.events}
        stored: list[Envelope] = []
        versions: dict[str, int] = {}
        for stream_id, events in groups:
            for event in events:
                if event.event_id in seen:
                    raise ValueError(f"event {event.event_id} is already stored")
                seen.add(event.event_id)
                versions[stream_id] = versions.get(stream_id, self._version(stream_id)) + 1
                stored.append(event.stored(versions[stream_id], len(self.events) + len(stored) + 1))
        self.events.extend(stored)
        if tracking is not None:
            self.tracking.add(tuple(tracking))
        return stored

    def _version(self, stream_id: str) -> int:
        return sum(1 for e in self.events if e.stream_id == stream_id)

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[Envelope]:
        return [e for e in self.events if e.stream_id == stream_id and e.version >= from_version]

    async def stream_version(self, stream_id: str) -> int:
        return self._version(stream_id)

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Envelope]:
        return [e for e in self.events if e.global_position > after_position][:limit]

    async def last_position(self) -> int:
        return len(self.events)

    async def is_processed(self, consumer: str, event_id: uuid.UUID) -> bool:
        return (consumer, event_id) in self.tracking

    async def get_event(self, event_id: uuid.UUID) -> Envelope | None:
        return next((e for e in self.events if e.event_id == event_id), None)

    async def get_event_for(self, consumer: str, event_id: uuid.UUID) -> tuple[Envelope | None, bool]:
        return await self.get_event(event_id), await self.is_processed(consumer, event_id)


# -- workspace and changes: tests/support/fake_repos.py (repositories in memory, no git) -----------


# -- sandbox -----------------------------------------------------------------------------------------

JUNIT = '<testsuite tests="{total}" failures="{failed}" errors="0" skipped="0">{cases}</testsuite>'


def pytest_outcome(cwd: Path, cmd: list[str]) -> tuple[int, int]:
    """(passed, failed) of the test files a pytest command names, counted (`count_tests`)."""
    return count_tests(cwd, [a for a in cmd if a.endswith(".py") and (Path(cwd) / a).is_file()])


class FakeSandbox:
    """Runs nothing: `outcome(cwd, cmd)` says (passed, failed) for a pytest command (default:
    counted from the test files it names), and the JUnit report pytest would have written is
    written; any other command succeeds with no output."""

    name = "fake"

    def __init__(self, outcome: Callable[[Path, list[str]], tuple[int, int]] = pytest_outcome):
        self.outcome = outcome
        self.calls: list[tuple[list[str], Path]] = []

    async def run(self, cmd: list[str], cwd: Path, timeout: float = 300, env: dict | None = None,
                  *, network: bool = False, writable: tuple[str, ...] = (), host_fs: bool = False) -> SandboxResult:
        self.calls.append((list(cmd), Path(cwd)))
        report = next((a.split("=", 1)[1] for a in cmd if a.startswith("--junitxml=")), None)
        if report is not None:
            passed, failed = self.outcome(Path(cwd), list(cmd))
            cases = "".join(f'<testcase classname="t" name="ok{i}"/>' for i in range(passed))
            cases += "".join(f'<testcase classname="t" name="bad{i}"><failure message="x"/></testcase>'
                             for i in range(failed))
            target = Path(report) if Path(report).is_absolute() else Path(cwd) / report
            target.write_text(JUNIT.format(total=passed + failed, failed=failed, cases=cases))
            return SandboxResult(1 if failed else 0, f"{passed} passed, {failed} failed", "", False, 0.0)
        return SandboxResult(0, "", "", False, 0.0)


# -- forge -------------------------------------------------------------------------------------------


class FakeForge:
    """A forge that remembers: which branches (at which commit) were published, which requests
    opened and merged. Like the real ones, it never opens or merges twice."""

    name = "fake"

    def __init__(self, head: Callable[[Path, str], str] | None = None) -> None:
        # (working copy, branch) -> the commit the branch is at; fake_deps points it at the fake
        # workspace, the contract suite leaves git's answer
        self.head = head or (lambda repo, branch: git(Path(repo), "rev-parse", f"refs/heads/{branch}"))
        self.published: dict[str, str] = {}
        self.requests: dict[str, MergeRequest] = {}
        self.merges: list[str] = []

    async def publish(self, repo: Path, branch: str) -> bool:
        sha = self.head(repo, branch)
        if self.published.get(branch) == sha:
            return False
        self.published[branch] = sha
        return True

    async def find_request(self, branch: str) -> MergeRequest | None:
        return self.requests.get(branch)

    async def open_request(self, repo: Path, branch: str, title: str, body: str) -> MergeRequest:
        if branch not in self.published:
            raise StepError(f"Branch {branch!r} is not on the forge yet", hint="Publish it first.")
        existing = self.requests.get(branch)
        if existing and existing.state in ("open", "merged"):
            return existing
        request = MergeRequest(id=str(len(self.requests) + 1), url=f"fake://requests/{len(self.requests) + 1}",
                               branch=branch, state="open", title=title, base="main")
        self.requests[branch] = request
        return request

    async def merge(self, request: MergeRequest) -> str:
        current = self.requests[request.branch]
        if current.state == "merged":
            return current.merge_sha
        sha = "m" + self.published[request.branch][1:]
        self.requests[request.branch] = MergeRequest(**{**current.__dict__, "state": "merged", "merge_sha": sha})
        self.merges.append(request.branch)
        return sha


# -- changes, signals, suites, run log ----------------------------------------------------------------


class FakeSignals:
    """The Signals port answering from a script over the in-memory repositories:
    `findings(files)` says {rule: count} for a commit's files (default: none)."""

    def __init__(self, repos: Repos | None = None, findings: Callable[[dict[str, str]], dict[str, int]] = lambda files: {}):
        self.repos = repos or Repos()
        self.findings = findings
        self.computed: list[tuple[str, str]] = []

    async def compute(self, repo: Path, base_sha: str, head_sha: str) -> dict[str, Any]:
        base, head = (self.repos.resolve(Path(repo), sha) for sha in (base_sha, head_sha))
        for name, sha in ((base_sha, base), (head_sha, head)):
            if sha is None:
                raise ValueError(f"{name} is not a commit in {repo}")
        self.computed.append((base, head))
        old, new = self.repos.commits[base].files, self.repos.commits[head].files
        changed = sorted(rel for rel in {*old, *new} if old.get(rel) != new.get(rel))
        before, after = self.findings(old), self.findings(new)
        return {
            "base_sha": base, "head_sha": head, "checked_files": [f for f in changed if f.endswith(".py")],
            "select": ["fake"], "findings_before": before, "findings_after": after,
            "findings_delta": {r: after.get(r, 0) - before.get(r, 0) for r in sorted({*before, *after})
                               if after.get(r, 0) != before.get(r, 0)},
            "parse_failures": [], "diff": {"files": len(changed), "added": 0, "removed": 0},
            "created_files": sorted(rel for rel in new if rel not in old),
        }


def count_tests(path: Path, files: Sequence[str]) -> tuple[int, int]:
    """(passed, failed) as the fake suites count them: each `def test_` is a test, failing when its
    body says `assert False`."""
    passed = failed = 0
    for rel in files:
        for body in (Path(path) / rel).read_text().split("def test_")[1:]:
            failed, passed = (failed + 1, passed) if "assert False" in body else (failed, passed + 1)
    return passed, failed


class FakeSuites:
    """The Suites port without running anything: `outcome(path, group, files)` says (passed,
    failed) for a run (group "own": the copy's own test files); by default the tests are counted
    from the files (`count_tests`). `runs` lists (group, copy name) per run."""

    def __init__(self, outcome: Callable[[Path, str, list[str]], tuple[int, int]] | None = None):
        self.outcome = outcome or (lambda path, group, files: count_tests(path, files))
        self.runs: list[tuple[str, str]] = []

    async def prepare(self, before: Path, after: Path) -> tuple[Suite, Suite]:
        return Suite("python", "fake"), Suite("python", "fake")

    async def run_own(self, path: Path, suite: Suite) -> TestGroupResult:
        own = sorted(str(p.relative_to(path)) for p in Path(path).rglob("test_*.py") if ".git" not in p.parts)
        return self._result(path, "own", own)

    async def run_generated(self, path: Path, files: Sequence[str], group: str, suite: Suite) -> TestGroupResult:
        return self._result(path, group, list(files))

    def _result(self, path: Path, group: str, files: list[str]) -> TestGroupResult:
        self.runs.append((group, Path(path).name))
        passed, failed = self.outcome(Path(path), group, files)
        return TestGroupResult(group=group, total=passed + failed, passed=passed, failed=failed,
                               output=f"fake: {passed} passed, {failed} failed")


class FakeRunLog:
    """The RunLog port in memory: `logs` maps a run to the events written for it."""

    def __init__(self, store: Any, root: Path = Path("/nonexistent/runs")):
        self.store, self.root = store, Path(root)
        self.logs: dict[str, list[Envelope]] = {}

    def path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    async def write(self, run_id: str) -> Path:
        self.logs[run_id] = list(await self.store.read_stream(run_id))
        return self.path(run_id)


# -- engine ------------------------------------------------------------------------------------------


@dataclass
class FakeEngine:
    """An engine that answers from a script; `fail` names a step that raises StepError, `edits`
    maps an improvement id to {path: content} (or to a reason to reject it)."""

    name: str = "rules"  # what RepoAnalyzed accepts; "llm" makes the reviewer blend its score
    analysis: Analysis = field(default_factory=lambda: Analysis(specification="spec", graph="graph",
                                                                architecture="arch", stats={"files": 1}))
    improvements: list[Improvement] = field(default_factory=list)
    edits: dict[str, dict[str, str] | str] = field(default_factory=dict)
    review_answer: ModelReview = field(default_factory=lambda: ModelReview(overall=8.0, summary="fine"))
    tests: dict[str, dict[str, str]] = field(default_factory=dict)
    fail: str | None = None
    calls: list[LlmCallRecorded] = field(default_factory=list)
    seen: list[tuple[str, Any]] = field(default_factory=list)

    def _step(self, name: str, arg: Any = None) -> None:
        self.seen.append((name, arg))
        self.calls.append(LlmCallRecorded(purpose=name, model="fake", prompt_hash=f"h-{name}-{len(self.calls)}",
                                          prompt_tokens=10, completion_tokens=5, cost_usd=0.001,
                                          response="{}"))
        if self.fail == name:
            raise StepError(f"the fake engine fails at {name}", hint="as scripted")

    async def analyze(self, repo: Path) -> Analysis:
        self._step("analyze", repo)
        return self.analysis

    async def suggest(self, repo: Path, analysis: Analysis, categories: list[str]) -> list[Improvement]:
        self._step("suggest", list(categories))
        return [i for i in self.improvements if i.category in categories]

    async def implement(self, repo: Path, improvement: Improvement) -> Implementation:
        self._step("implement", improvement.id)
        edit = self.edits.get(improvement.id, {})
        if isinstance(edit, str):
            raise ChangeRejectedError(edit)
        for rel, content in edit.items():
            (Path(repo) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(repo) / rel).write_text(content)
        return Implementation(files=sorted(edit))

    async def review(self, repo: Path, base_sha: str, head_sha: str, signals: dict[str, Any]) -> ModelReview:
        self._step("review", signals)
        return self.review_answer

    async def write_tests(self, repo: Path, improvements: list[Improvement], categories: list[str]) -> GeneratedTests:
        self._step("write_tests", [i.id for i in improvements])
        return GeneratedTests(groups=self.tests)

    def drain_calls(self) -> list[LlmCallRecorded]:
        calls, self.calls = self.calls, []
        return calls


# -- feature generator -------------------------------------------------------------------------------


@dataclass
class FakeFeatureGenerator:
    """The generator's steps as canned answers: no checkout, agent or proofs. Like the real one, a
    missing task directory is a StepError and `validate` writes the attempt folder; `calls` keeps
    each step with what it was given."""

    generated: FeatureGenerated = field(default_factory=lambda: FeatureGenerated(
        feature_patch="+++ b/calc/ops.py\n", tests_patch="+++ b/tests/test_ops.py\n", feature_md="# F", steps=2))
    calls: list[tuple] = field(default_factory=list)

    async def build_prompt(self, request: FeatureGenerationRequested) -> FeaturePromptBuilt:
        self.calls.append(("prompt", request))
        if not Path(request.task_dir).is_dir():
            raise StepError(f"task directory not found: {request.task_dir}")
        return FeaturePromptBuilt(prompt=f"write a feature for {request.task_dir}")

    async def generate(self, request: FeatureGenerationRequested, prompt: FeaturePromptBuilt) -> FeatureGenerated:
        self.calls.append(("agent", request, prompt))
        return self.generated

    async def validate(self, request: FeatureGenerationRequested, prompt: FeaturePromptBuilt,
                       generated: FeatureGenerated) -> FeatureValidated:
        self.calls.append(("validate", request, prompt, generated))
        failed = generated.split_failure or ("" if generated.submitted else f"agent did not submit "
                                                                             f"({generated.stop_reason})")
        validated = FeatureValidated(tests_passed=not failed, valid=not failed, reason=failed)
        folder = Path(request.output_dir) / f"attempt_{request.attempt}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("feature.patch", generated.feature_patch), ("tests.patch", generated.tests_patch),
                           ("feature.md", generated.feature_md), ("result.json", validated.model_dump_json())):
            (folder / name).write_text(text)
        return validated


def fake_deps(
    tmp_path: Path,
    repos_files: dict[str, dict[str, str]],
    *,
    engine: FakeEngine | None = None,
    sandbox: FakeSandbox | None = None,
    forge: FakeForge | None = None,
    store: InMemoryEventStore | None = None,
    settings: Settings | None = None,
    openai_client: Any = None,
    generator: Any = None,
    changes: FakeChanges | None = None,
    signals: FakeSignals | None = None,
    suites: FakeSuites | None = None,
) -> Deps:
    """`Deps` wired to fakes only (the same dataclass bootstrap fills with real adapters), except the
    generator: its steps are the real ones (on tmp paths; the agent's model is `openai_client`)."""
    settings = settings or Settings(REPO_PILOT_HOME=tmp_path / "home")
    engine = engine or FakeEngine()
    forge = forge or FakeForge()
    store = store or InMemoryEventStore()
    repos = Repos()  # what the workspace, the changes, the signals and the forge see alike
    workspace = FakeWorkspace(tmp_path / "ws", repos_files, repos)
    changes = changes or FakeChanges(repos)
    changes.repos = repos
    signals = signals or FakeSignals(repos)
    signals.repos = repos
    forge.head = lambda repo, branch: repos.copy_of(repo).head

    def make_engine(ctx: RunContext, previous: list[LlmCallRecorded]) -> FakeEngine:
        return engine

    return Deps(
        settings=settings,
        store=store,
        workspace=workspace,
        sandbox=sandbox or FakeSandbox(lambda cwd, cmd: (1, 0)),
        make_engine=make_engine,
        make_forge=lambda kind, target: forge,
        changes=changes,
        signals=signals,
        suites=suites or FakeSuites(),
        run_log=FakeRunLog(store, settings.runs_dir),
        generator=generator or Generator(settings, openai_client),
    )


async def given(store: InMemoryEventStore, stream_id: str, *payloads: Any) -> list[Envelope]:
    """Append `payloads` to `stream_id` as one chain (each caused by the one before); the stored events."""
    from shared.events import make_event

    stored: list[Envelope] = []
    for payload in payloads:
        cause = stored[-1] if stored else None
        stored += await store.append(stream_id, [make_event(payload, stream_id, cause=cause)])
    return stored
