"""The agent's shell: confined to its workspace, no network unless the attempt allows it.

The confinement itself is the local sandbox's (shared/adapters/sandbox.py); these tests check that
the agent asks for it and gets it, through the real sandbox, with the real openai client against
the scripted model server. Where this build's local sandbox has no per-call rights, or the kernel
allows no namespaces, the confinement tests are skipped with the reason.
"""

import inspect
import sys

import openai
import pytest

from shared.adapters import task_commands as proc
from shared.adapters.sandbox import LocalSandbox
from shared.engines.generator.agent import AgentLimits, run_agent
from tests.support.model_server import ScriptedModelServer

pytestmark = pytest.mark.integration


def _kind() -> str:
    if "network" not in inspect.signature(LocalSandbox.run).parameters:
        return "unsupported"
    return getattr(getattr(LocalSandbox(), "confinement", None), "kind", "none")


def _bash(command: str) -> dict:
    return {"tool_calls": [{"name": "bash", "arguments": {"command": command}}]}


async def _agent_outputs(server: ScriptedModelServer, workspace, commands: list[str], network: bool) -> list[str]:
    for command in commands:
        server.add(lambda request: True, _bash(command), times=1)
    server.add(lambda request: True, {"tool_calls": [{"name": "submit", "arguments": {"feature_md": "x"}}]})
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")
    result = await run_agent(client, "scripted-model", "system", "prompt", workspace,
                             AgentLimits(step_limit=len(commands) + 1, network=network),
                             sandbox=proc.agent_sandbox("local"))
    assert result.submitted, result.error
    return [a["output"] for s in result.trajectory["steps"] for a in s["actions"] if a["tool"] == "bash"]


def _fetch(url: str) -> str:
    return (f"{sys.executable} -c \"import urllib.request; "
            f"print('FETCHED', urllib.request.urlopen('{url}/models', timeout=5).status)\"")


def test_the_agent_asks_for_a_confined_shell():
    class Recording:  # a sandbox with per-call rights, to read what the agent asks for
        async def run(self, cmd, cwd, timeout=300, env=None, *, network=False, host_fs=False):
            raise AssertionError("not run")

    class Plain:  # a sandbox without them is called without them
        async def run(self, cmd, cwd, timeout=300, env=None):
            raise AssertionError("not run")

    assert proc.confinement_args(Recording(), network=False, host_fs=False) == {"network": False, "host_fs": False}
    assert proc.confinement_args(Plain(), network=False, host_fs=False) == {}


@pytest.mark.skipif(_kind() == "none", reason="the local sandbox cannot confine here")
async def test_no_network_for_the_agent_unless_allowed(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with ScriptedModelServer() as server:
        closed = await _agent_outputs(server, workspace, [_fetch(server.base_url)], network=False)
    assert "FETCHED" not in closed[0] and not closed[0].startswith("exit code 0")
    with ScriptedModelServer() as server:
        opened = await _agent_outputs(server, workspace, [_fetch(server.base_url)], network=True)
    assert "FETCHED 200" in opened[0], opened[0]


@pytest.mark.skipif(_kind() not in ("bwrap", "mountns"), reason="no filesystem view here (no bubblewrap, no mount namespace)")
async def test_the_agent_sees_its_workspace_and_nothing_of_the_users(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "mine.txt").write_text("in the workspace\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's file\n")
    with ScriptedModelServer() as server:
        inside, beyond, wrote = await _agent_outputs(
            server, workspace, ["cat mine.txt", f"cat {outside}", f"echo x > {tmp_path}/escaped.txt"], network=False)
    assert "in the workspace" in inside
    assert "the user's file" not in beyond and not beyond.startswith("exit code 0")
    assert not (tmp_path / "escaped.txt").exists(), wrote  # whatever the shell wrote stayed inside
