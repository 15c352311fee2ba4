"""The composition root wires every engine with the configured sandbox (issue 18): an isolation
level chosen in the settings (a `.env`, not the process environment) reaches the rules engine's
validation runs, and the engine builds no sandbox of its own."""

from __future__ import annotations

import pytest

from shared.app.bootstrap import bootstrap
from shared.common.settings import Settings
from shared.events import PipelineRequested
from shared.policy.run import RunContext
from tests.support.fakes import InMemoryEventStore

pytestmark = pytest.mark.integration


def test_the_rules_engine_validates_in_the_sandbox_the_settings_configure(tmp_path, monkeypatch):
    monkeypatch.delenv("REPO_PILOT_ISOLATION", raising=False)
    env_file = tmp_path / "pilot.env"
    env_file.write_text("REPO_PILOT_ISOLATION=none\n")
    settings = Settings(_env_file=env_file, REPO_PILOT_HOME=tmp_path / "home")
    assert settings.isolation == "none"

    deps = bootstrap(settings, InMemoryEventStore())
    engine = deps.make_engine(RunContext("run-wiring", request=PipelineRequested(repo=str(tmp_path))), [])

    assert engine.name == "rules"
    assert engine.own_tests.sandbox is deps.sandbox
    assert deps.sandbox.confinement.kind == "none"
