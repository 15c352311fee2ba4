"""Model-server families for the compatibility suite, and the run they all have to complete.

`make_tools_repo(path)` builds a small real repository whose `run()` calls a shell
(`shell=True`); `script_tools(server)` teaches a `ScriptedModelServer` a sound run over it: the
shell call replaced by an argument list (security-1), a SECURITY.md (security-2), a `sub`
function added after `add` (compliance-1) and a LICENSE (compliance-2), tests for both
categories and a review.

`FAMILIES` maps a name to the keyword arguments of a `ScriptedModelServer` (and settings) that
imitate how one kind of server answers those same scripted answers: strict `json_schema`, a
server that ignores `response_format` and wraps answers in prose and fences, `<think>` blocks,
vLLM's `reasoning_content`, one request at a time, slow answers, 429s for concurrent requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.ports.engine import REVIEW_DIMENSIONS
from tests.conftest import make_git_repo
from tests.support.llm_script import purpose
from tests.support.model_server import Fault, Reply, ScriptedModelServer

CATEGORIES = ("security", "compliance")

CORE = '''"""Small helpers."""

import subprocess


def add(a, b):
    return a + b


def run(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False).stdout
'''

TOOLS_FILES = {
    "README.md": "# tools\n\nSmall helpers: add numbers, run a command.\n",
    "pyproject.toml": '[project]\nname = "tools"\nversion = "0.1.0"\n',
    "tools/__init__.py": '"""tools: add, run."""\n',
    "tools/core.py": CORE,
    "tests/__init__.py": "",
    "tests/test_core.py": (
        "from tools.core import add, run\n\n\n"
        "def test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_run():\n    assert run('echo hi') == 'hi\\n'\n"
    ),
}

DOCS = {
    "specification": "# Specification\n\ntools: add numbers and run a command.\n",
    "graph": "# Graph\n\n- tools.core (subprocess)\n- tests.test_core -> tools.core\n",
    "architecture": "# Architecture\n\nOne module, `tools/core.py`, tested with pytest.\n",
}

IDEAS = {
    "security": [
        {"title": "Run commands without a shell", "rationale": "shell=True lets input inject commands",
         "files": ["tools/core.py"], "changes": "split the command with shlex and drop shell=True"},
        {"title": "Add a security policy", "rationale": "reporters need to know where to go",
         "files": ["SECURITY.md"], "changes": "create SECURITY.md"},
    ],
    "compliance": [
        {"title": "Offer subtraction next to addition", "rationale": "the helpers only add",
         "files": ["tools/core.py"], "changes": "add sub(a, b) after add"},
        {"title": "Add a license", "rationale": "the project states no license",
         "files": ["LICENSE"], "changes": "create an MIT LICENSE file"},
    ],
}

NO_SHELL = [
    {"path": "tools/core.py", "search": "import subprocess\n", "replace": "import shlex\nimport subprocess\n"},
    {
        "path": "tools/core.py",
        "search": "    return subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False).stdout\n",
        "replace": "    return subprocess.run(shlex.split(cmd), capture_output=True, text=True, check=False).stdout\n",
    },
]
ADD_SUB = [
    {
        "path": "tools/core.py",
        "search": "def add(a, b):\n    return a + b\n",
        "replace": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
    }
]
EDITS = {
    "security-1": NO_SHELL,
    "security-2": [{"path": "SECURITY.md", "search": "",
                    "replace": "# Security policy\n\nReport vulnerabilities to security@example.com.\n"}],
    "compliance-1": ADD_SUB,
    "compliance-2": [{"path": "LICENSE", "search": "", "replace": "MIT License\n\nCopyright (c) tools authors\n"}],
}

TESTS = {
    # without a shell, `$HOME` is not expanded: the test fails while shell=True is still there
    "security": "from tools.core import run\n\n\ndef test_run_uses_no_shell():\n"
    "    assert run('echo $HOME') == '$HOME\\n'\n",
    "compliance": "from tools.core import sub\n\n\ndef test_sub():\n    assert sub(3, 1) == 2\n",
}


def make_tools_repo(path: Path) -> Path:
    return make_git_repo(path, TOOLS_FILES)


def review_answer(score: float = 9, scores: Mapping[str, Any] | None = None) -> str:
    return json.dumps({
        "scores": dict(scores) if scores is not None else {d: score for d in REVIEW_DIMENSIONS},
        "overall": score, "issues": [], "summary": f"scripted review {score}",
    })


def script_tools(
    server: ScriptedModelServer, *, ideas_per_category: int = 2, review: str | None = None,
    overrides: Mapping[str, Reply] | None = None, categories: Iterable[str] = CATEGORIES,
) -> ScriptedModelServer:
    """Every answer of a sound run on the tools repository (see the module docstring)."""
    for name, reply in (overrides or {}).items():
        server.add(purpose(name), reply)
    server.add(purpose("analyze"), json.dumps(DOCS))
    for category in categories:
        ideas = IDEAS[category][:ideas_per_category]
        server.add(purpose(f"suggest:{category}"), json.dumps({"improvements": ideas}))
        for n in range(1, len(ideas) + 1):
            key = f"{category}-{n}"
            server.add(purpose(f"implement:{key}"), json.dumps({"edits": EDITS[key], "summary": "done"}))
        server.add(purpose(f"write_tests:{category}"), json.dumps(
            {"path": f"tests/repo_pilot/test_{category}.py", "content": TESTS[category]}))
    server.add(purpose("review"), review or review_answer())
    return server


# -- how servers answer --------------------------------------------------------------------------


def asked_mode(request: dict) -> str:
    """The structured-output mode a request asked for."""
    if request.get("tools"):
        return "tools"
    if "structured_outputs" in request or "guided_json" in request:
        return "guided"
    if "format" in request:
        return "ollama_format"
    return (request.get("response_format") or {}).get("type") or "plain"


def in_prose(content: str) -> str:
    return f"Sure! Here is the JSON you asked for:\n\n```json\n{content}\n```\n\nLet me know if you need changes."


def strict_json(request: dict, message: dict) -> dict:
    """OpenAI with json_schema: the bare object, nothing else."""
    return message


def ignores_response_format(request: dict, message: dict) -> dict:
    """A server that passes `response_format` by and a chatty model: prose around a fence."""
    return {**message, "content": in_prose(message["content"])}


def think_first(request: dict, message: dict) -> dict:
    """A reasoning model on Ollama / llama.cpp: `<think>` (holding a draft object) before the answer."""
    draft = '{"draft": true, "improvements": "not yet"}'
    return {**message, "content": f"<think>\nThe user wants JSON. A first draft: {draft}. "
                                  f"Let me check the files again.\n</think>\n\n{message['content']}"}


def vllm_reasoning(request: dict, message: dict) -> dict:
    """vLLM with a reasoning parser: thinking in `reasoning_content`; its grammar holds the answer
    to the schema only under guided decoding or `json_schema`, else the model chats around it."""
    reasoning = 'Considering the repository... maybe {"improvements": []}? No, there is work to do.'
    content = message["content"] if asked_mode(request) in ("guided", "json_schema") else in_prose(message["content"])
    return {**message, "content": content, "reasoning_content": reasoning}


def ollama_format(request: dict, message: dict) -> dict:
    """Ollama: the `format` schema is enforced; `response_format` is not, so the model chats."""
    return message if asked_mode(request) == "ollama_format" else ignores_response_format(request, message)


def tool_calls_only(request: dict, message: dict) -> dict:
    """A server whose model answers through the forced tool call, content empty."""
    if asked_mode(request) != "tools":
        return ignores_response_format(request, message)
    return {"role": "assistant", "content": None,
            "tool_calls": [{"name": "answer", "arguments": message["content"]}]}


def refuse_json_object(server: ScriptedModelServer) -> None:
    """LM Studio: `response_format` json_object is refused with HTTP 400 (json_schema works)."""
    server.add(lambda r: asked_mode(r) == "json_object", Fault.status(400))


def refuse_json_schema(server: ScriptedModelServer) -> None:
    """An older server: `json_schema` refused with HTTP 400, `json_object` enforced."""
    server.add(lambda r: asked_mode(r) == "json_schema", Fault.status(400))


def schema_only(request: dict, message: dict) -> dict:
    """Strict JSON under a schema or json_object; a chatty model otherwise."""
    if asked_mode(request) in ("json_schema", "json_object"):
        return message
    return ignores_response_format(request, message)


@dataclass
class Family:
    """How one kind of server answers; `settings` are what its user sets (README profiles)."""

    server: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    ideas_per_category: int = 2
    review: str | None = None
    before: Callable[[ScriptedModelServer], None] | None = None
    timeout: float = 10.0  # the client's per-request timeout


RENAMED = {"Correctness": "9/10", "Safety": 9, "code quality": 8, "Clarity": 9, "Tests": "8", "vibes": 10}

FAMILIES: dict[str, Family] = {
    "openai_json_schema": Family(server={"shape": strict_json}),
    "prose_and_fences": Family(server={"shape": ignores_response_format}),
    "think_blocks": Family(server={"shape": think_first}),
    "vllm_reasoning_content": Family(server={"shape": vllm_reasoning}, settings={"llm_structured": "guided"}),
    "ollama_format": Family(server={"shape": ollama_format}, settings={"llm_structured": "ollama_format"}),
    "tool_calls": Family(server={"shape": tool_calls_only}, settings={"llm_structured": "tools"}),
    "lm_studio_refuses_json_object": Family(server={"shape": schema_only}, before=refuse_json_object),
    "json_schema_refused": Family(server={"shape": schema_only}, before=refuse_json_schema),
    "one_improvement_per_category": Family(ideas_per_category=1),
    "review_dimensions_renamed": Family(review=review_answer(9, RENAMED)),
    # Four implement calls queued at the server would take 1.2 s, past the client's timeout.
    "one_request_at_a_time": Family(server={"slots": 1, "answer_delay": 0.3}, settings={"llm_concurrency": 1},
                                    timeout=1.0),
    "slow_answers": Family(server={"answer_delay": 0.8}),
    "429_when_busy": Family(server={"slots": 1, "busy": "429", "answer_delay": 0.2}),
}
