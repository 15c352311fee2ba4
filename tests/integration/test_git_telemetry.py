"""What the git door records about a command, through real git in a fresh process (a tracer
provider can be installed once per process): with telemetry on, a secret in a command's arguments
is redacted in the span or span event that records them; with telemetry off nothing is recorded,
so neither the telemetry stack nor the secrets scanner is loaded for git."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import make_git_repo

pytestmark = pytest.mark.integration

TOKEN = "AKIA" + "IOSFODNN7" + "EXAMPLE"  # an AWS access key's shape: only the scanner finds it (no URL, no NAME=)
RECORDED = """
import json, sys
from pathlib import Path
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from shared.adapters.git import run_git
from shared.common.telemetry import handler_span

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
repo, token = Path(sys.argv[1]), sys.argv[2]
args = ("-c", f"http.extraHeader=X-Key: {token}", "rev-parse", "--git-dir")
assert run_git(repo, *args).returncode == 0  # outside any span: a span of its own
with handler_span("h", None, replayed=False):
    assert run_git(repo, *args).returncode == 0  # inside one: an event of it
spans = {s.name: s for s in exporter.get_finished_spans()}
print(json.dumps({"span": list(spans["git rev-parse"].attributes["pilot.git.args"]),
                  "event": list(spans["h"].events[0].attributes["pilot.git.args"])}))
"""
UNRECORDED = """
import json, sys
from pathlib import Path
from shared.adapters.git import run_git

assert run_git(Path(sys.argv[1]), "-c", f"http.extraHeader=X-Key: {sys.argv[2]}", "rev-parse").returncode == 0
print(json.dumps([m for m in ("detect_secrets", "opentelemetry.trace", "asyncio") if m in sys.modules]))
"""


def _child(script: str, repo) -> object:
    done = subprocess.run([sys.executable, "-c", script, str(repo), TOKEN], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_secret_in_git_arguments_is_redacted_in_the_span_and_the_event_that_record_it(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    recorded = _child(RECORDED, repo)
    for where in ("span", "event"):
        args = recorded[where]
        assert TOKEN not in " ".join(args), where
        assert args[1] == "http.extraHeader=X-Key: [REDACTED]", where
        assert args[2:] == ["rev-parse", "--git-dir"], where


def test_without_telemetry_git_loads_neither_the_tracer_nor_the_secrets_scanner(tmp_path):
    repo = make_git_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    assert _child(UNRECORDED, repo) == []
