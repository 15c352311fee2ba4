"""Prompt texts and the shapes of the answers the llm engine asks for.

Every system prompt starts with `PURPOSE: <purpose>` on its own line, so recorded calls,
replays and scripted test fixtures can tell the calls apart. Each prompt states the JSON shape
it wants; the pydantic models below are what the answer is validated against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import AliasChoices, BaseModel, Field, model_validator

from shared.policy.edits import Edit
from shared.ports.engine import REVIEW_DIMENSIONS

CATEGORY_GUIDE = {
    "features": "new or improved user-facing behaviour that fits what the project already does",
    "security": "input validation, unsafe calls, secrets handling, injection, dependency risks",
    "compliance": "licensing headers, logging and audit trails, typing, docs, lint and style conformance",
    "integration": "CI configuration, packaging, configuration through the environment, APIs and interop",
}


# -- answer shapes -------------------------------------------------------------------------


class AnalysisAnswer(BaseModel):
    """A missing document is filled in by the engine with a note; at least one must be there."""

    specification: str = ""
    graph: str = ""
    architecture: str = ""

    @model_validator(mode="after")
    def _some_document(self) -> AnalysisAnswer:
        if not (self.specification.strip() or self.graph.strip() or self.architecture.strip()):
            raise ValueError("write the three documents: specification, graph, architecture")
        return self


class Idea(BaseModel):
    title: str = Field(min_length=1)
    rationale: str = Field(default="", validation_alias=AliasChoices("rationale", "why", "reason", "description"))
    files: list[str] = Field(default_factory=list)
    changes: str = Field(default="", validation_alias=AliasChoices("changes", "change", "what", "details"))


class SuggestAnswer(BaseModel):
    improvements: list[Idea] = Field(validation_alias=AliasChoices("improvements", "suggestions", "ideas"))
    reason: str = ""  # why there are none (or fewer than asked)


class ImplementAnswer(BaseModel):
    edits: list[Edit]
    summary: str = ""


class ReviewAnswer(BaseModel):
    """Read leniently: scores under other names or as strings ("8/10") are sorted out by the
    engine (`review_scores`); `overall` may be missing when there are scores to average."""

    scores: dict[str, object] = Field(default_factory=dict)
    overall: float | None = Field(default=None, ge=1.0, le=10.0)
    issues: list[str] = Field(default_factory=list)
    summary: str = ""


class TestsAnswer(BaseModel):
    path: str = ""
    content: str = Field(min_length=1, validation_alias=AliasChoices("content", "code", "module", "test"))


# -- prompts -------------------------------------------------------------------------------


def system(purpose: str, body: str) -> dict[str, str]:
    return {"role": "system", "content": f"PURPOSE: {purpose}\n{body.strip()}"}


def user(body: str) -> dict[str, str]:
    return {"role": "user", "content": body}


ANALYZE = """
You are a senior engineer documenting a repository you have just read.
Write three Markdown documents and answer with one JSON object:
{"specification": "...", "graph": "...", "architecture": "..."}
- specification: what the project does, for whom, its public interface (CLI, API, library), its inputs and outputs.
- graph: the modules and how they depend on each other, as a Markdown list or a mermaid diagram.
- architecture: layers, main components, data flow, external dependencies, how it is built and tested.
Only describe what the files show. Answer with the JSON object only.
"""

SUGGEST = """
You suggest concrete, small, safe improvements to a repository in one category: {category}
({guide}).
Answer with one JSON object:
{{"improvements": [{{"title": "...", "rationale": "why it matters here", "files": ["relative/path.py"],
"changes": "what to change, precisely"}}]}}
Give 2 to 4 improvements. Each must be doable by editing a few files, name the files
(relative paths inside the repository), and not break existing behaviour or tests.
If there is nothing worth doing in this category, answer {{"improvements": [], "reason": "why"}}.
"""

IMPLEMENT = """
You implement one improvement in a repository by writing search/replace edit blocks.
Answer with one JSON object: {"edits": [{"path": "relative/path", "search": "...", "replace": "..."}],
"summary": "one line"}
Rules:
- `search` is a run of whole lines copied exactly from the current file, long enough to be unique.
- `replace` is what those lines become. Keep edits small; several blocks are fine.
- An empty `search` creates a new file with `replace` as its content (or appends to an existing one).
- Paths are relative to the repository root; never write outside it or into .git.
- Python files must still parse. Keep existing behaviour and tests working.
If the improvement cannot be done safely, answer {"edits": [], "summary": "why not"}.
"""

IMPLEMENT_RETRY = """
Some of your edit blocks did not apply. The blocks not listed here were applied and are
already in the files shown below (which are their current contents). Send corrected blocks
for the failed ones only, in the same JSON shape: {"edits": [...], "summary": "..."}.
"""

REVIEW = f"""
You review a change to a repository like a strict senior engineer.
Score each dimension from 1 (bad) to 10 (excellent): {", ".join(REVIEW_DIMENSIONS)};
then an overall score from 1 to 10. List concrete issues (empty if none) and a short summary.
Objective signals (linters, parse checks, diff size) are given; take them into account.
Answer with one JSON object:
{{"scores": {json.dumps({d: 7 for d in REVIEW_DIMENSIONS})}, "overall": 7, "issues": ["..."], "summary": "..."}}
"""

WRITE_TESTS = """
You write a pytest test module that checks improvements made to a repository in the
category {category}. The tests run from the repository root with the package importable.
Test behaviour the improvements promise; use only the standard library and pytest; keep it
fast and deterministic (no network, no sleeps); skip cleanly when an optional tool is missing.
Answer with one JSON object: {{"path": "tests/repo_pilot/test_{category}.py", "content": "<the python module>"}}
"""

WRITE_TESTS_JS = """
You write a Node.js test file that checks improvements made to a JavaScript repository in the
category {category}. It is CommonJS, uses only `node:test`, `node:assert` and Node's built-in
modules, and runs as `node --test .repo-pilot/checks/{category}.cjs` (the repository root is
`path.resolve(__dirname, '..', '..')`). Test behaviour the improvements promise; keep it fast and
deterministic (no network, no timers).
Answer with one JSON object: {{"path": ".repo-pilot/checks/{category}.cjs", "content": "<the JavaScript file>"}}
"""

WRITE_TESTS_RUST = """
You write a Rust integration test file that checks improvements made to a Rust crate in the
category {category}. It lives at `tests/repo_pilot_{category}.rs`, uses only the standard library
and the crate's public API, reaches files through `env!("CARGO_MANIFEST_DIR")`, and has `#[test]`
functions. Keep it fast and deterministic (no network).
Answer with one JSON object: {{"path": "tests/repo_pilot_{category}.rs", "content": "<the Rust file>"}}
"""


@dataclass(frozen=True)
class TestKind:
    """How generated tests look in one ecosystem: where the file goes, what to ask, what it must hold."""

    language: str
    path: str  # formatted with the category
    prompt: str
    marker: str  # a test file without it has no test


TEST_KINDS = {
    "python": TestKind("python", "tests/repo_pilot/test_{category}.py", WRITE_TESTS, "def test_"),
    "javascript": TestKind("javascript", ".repo-pilot/checks/{category}.cjs", WRITE_TESTS_JS, "node:test"),
    "rust": TestKind("rust", "tests/repo_pilot_{category}.rs", WRITE_TESTS_RUST, "#[test]"),
}


def file_block(path: str, content: str, note: str = "") -> str:
    return f"## {path}{note}\n```\n{content}\n```"


def edits_json(edits: list[Edit]) -> str:
    return json.dumps([e.model_dump() for e in edits], indent=1)
