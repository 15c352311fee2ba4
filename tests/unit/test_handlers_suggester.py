"""The suggester's handler against in-memory fakes of its ports: no servers."""

from __future__ import annotations

import pytest

from services.suggester.handlers import on_repo_analyzed
from shared.events import Improvement
from shared.ports.errors import StepError
from tests.support.fakes import FakeEngine, fake_deps
from tests.support.runs import analyzed_run

pytestmark = pytest.mark.unit

REPO = {"app.py": "x = 1\n", "LICENSE": "MIT\n"}
IDEAS = [
    Improvement(id="sec-1", category="security", title="t", rationale="r", files=["app.py"]),
    Improvement(id="com-1", category="compliance", title="add a license", rationale="r", files=["LICENSE"]),
    Improvement(id="com-2", category="compliance", title="add SECURITY.md", rationale="r",
                files=["SECURITY.md"]),
    Improvement(id="fea-1", category="features", title="t", rationale="r", files=["app.py"]),
]


async def test_suggests_for_the_requested_categories_from_the_recorded_analysis(tmp_path):
    engine = FakeEngine(improvements=IDEAS)
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=engine)
    [*_, event] = await analyzed_run(deps, categories=["security", "compliance"])

    out = await on_repo_analyzed(event, deps)

    assert [e.type for e in out] == ["LlmCallRecorded", "ImprovementsSuggested"]
    assert [i.id for i in out[-1].data.improvements] == ["sec-1", "com-1", "com-2"]
    assert engine.seen == [("suggest", ["security", "compliance"])]
    assert not deps.workspace.live


async def test_scaffold_keeps_only_improvements_that_add_missing_files(tmp_path):
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=FakeEngine(improvements=IDEAS))
    [*_, event] = await analyzed_run(deps, categories=["compliance"], mode="scaffold")

    out = await on_repo_analyzed(event, deps)

    assert [i.id for i in out[-1].data.improvements] == ["com-2"]  # LICENSE exists already


async def test_a_failing_engine_leaves_no_copy(tmp_path):
    deps = fake_deps(tmp_path, {"demo": REPO}, engine=FakeEngine(fail="suggest"))
    [*_, event] = await analyzed_run(deps)
    with pytest.raises(StepError):
        await on_repo_analyzed(event, deps)
    assert deps.workspace.made and not deps.workspace.live
