"""A scripted coding agent for the generator's tests: the model's side of one attempt that writes the
fixture's `two_conflicts` feature and its tests, runs them, leaves a scratch file and submits."""

from __future__ import annotations

import sys

from tests.support.model_server import ScriptedModelServer
from tests.support.task_fixture import PAIRS

FEATURE_MD = """**Title**: Checked multiply and divide

**Pull Request Details**
**Description**: multiply and divide reject bad input with clear errors.

**Technical Background**: fixture.

**Solution**: type and zero checks.

**Files Modified**
- `calc/ops.py`
"""


def _bash(command: str) -> dict:
    return {"tool_calls": [{"name": "bash", "arguments": {"command": command}}]}


def feature_steps() -> list[dict]:
    source, tests = PAIRS["two_conflicts"]
    return [
        _bash(f"cat > calc/ops.py <<'PILOT_EOF'\n{source['calc/ops.py']}PILOT_EOF"),
        _bash(f"cat > tests/test_ops.py <<'PILOT_EOF'\n{tests['tests/test_ops.py']}PILOT_EOF\n"
              "echo 'notes while working' > scratch_notes.txt"),
        _bash(f"{sys.executable} -m pytest -q -p no:cacheprovider tests"),
        {"tool_calls": [{"name": "submit", "arguments": {"feature_md": FEATURE_MD}}]},
    ]


def script_feature(server: ScriptedModelServer) -> None:
    """One conversation, in order (rules used up one by one)."""
    for reply in feature_steps():
        server.add(lambda request: True, reply, times=1)


def script_feature_per_conversation(server: ScriptedModelServer) -> None:
    """Any number of conversations, concurrent or not: each request is answered by how far its own
    conversation has got (the number of assistant turns in it)."""
    steps = feature_steps()

    def reply(request: dict) -> dict:
        turns = sum(1 for m in request["messages"] if m["role"] == "assistant")
        return steps[min(turns, len(steps) - 1)]

    server.add(lambda request: True, reply)
