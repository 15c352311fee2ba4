"""docs/architecture.md stays true: every dotted name it cites imports, and its walk of one run
follows the services' routes (who reacts to which event, what each publishes)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
NAME = re.compile(r"`((?:shared|services)(?:\.[A-Za-z_]\w*)+)`")


def resolve(dotted: str) -> object:
    """The object a dotted name refers to: modules imported as needed, then attributes."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if isinstance(obj, ModuleType) and not hasattr(obj, part):
            importlib.import_module(".".join(parts[:i]))  # a submodule not imported yet
        obj = getattr(obj, part)
    return obj


def cited() -> list[str]:
    return sorted(set(NAME.findall(DOC.read_text())))


def test_the_doc_cites_the_whole_flow():
    names = cited()
    assert len(names) > 40
    for hop in ("shared.app.cli.run", "shared.messaging.relay.Relay.run",
                "services.merger.handlers.on_changes_reviewed", "services.analyzer.handlers.on_merge_completed"):
        assert hop in names


@pytest.mark.parametrize("dotted", cited())
def test_every_cited_name_imports(dotted):
    assert resolve(dotted) is not None


def test_a_stale_name_is_caught():
    with pytest.raises(AttributeError):
        resolve("shared.store.postgres.PostgresEventStore.no_such_method")
    with pytest.raises(ModuleNotFoundError):
        resolve("shared.no_such_package.thing")


# -- the walk of one run against the routes -------------------------------------------------
#
# Which service subscribes to which event comes from `services/<name>/main.py` (`ROUTES`); what a
# handler publishes is read from its module's source: the event payloads it (or a helper of its
# module it calls) constructs. Step bookkeeping and model calls are every service's, not a hop's.

PIPELINE = ("analyzer", "suggester", "executor", "tester", "reviewer", "merger")
BOOKKEEPING = {"StepStarted", "StepCompleted", "StepFailed", "StepSkipped", "LlmCallRecorded"}
HANDLER = re.compile(r"`services\.(\w+)\.handlers\.(on_\w+)`")
EVENT = re.compile(r"`([A-Z][A-Za-z]+)`")


def routes() -> dict[tuple[str, str], set[str]]:
    """(service, handler name) -> the event types routed to it, from each service's ROUTES."""
    found: dict[tuple[str, str], set[str]] = {}
    for service in PIPELINE:
        for route in importlib.import_module(f"services.{service}.main").ROUTES:
            found.setdefault((service, route.handler.__name__), set()).add(route.event_type)
    return found


def published(service: str, handler: str) -> set[str]:
    """The event types `handler` constructs, following calls to its module's own functions."""
    import ast

    from shared.events.registry import registered_types

    path = DOC.parents[1] / "services" / service / "handlers.py"
    functions = {node.name: node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    types, seen, todo = set(), set(), [handler]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in registered_types():
                    types.add(node.func.id)
                elif node.func.id in functions:
                    todo.append(node.func.id)
    return types - BOOKKEEPING


def walk_of_one_run(text: str) -> list[tuple[list[tuple[str, str]], set[str]]]:
    """The hops of "One run, hop by hop" that name a service's handler: (handlers, events named)."""
    from shared.events.registry import registered_types

    section = text.split("## One run, hop by hop", 1)[1].split("\n## ", 1)[0]
    hops = re.split(r"\n\s*\d+\. ", section)[1:]
    return [(HANDLER.findall(hop), {e for e in EVENT.findall(hop) if e in registered_types()} - BOOKKEEPING)
            for hop in hops if HANDLER.search(hop)]


def walk_problems(text: str) -> list[str]:
    """How the doc's walk of one run disagrees with the routes (empty when it does not)."""
    table = routes()
    problems = []
    available = {"PipelineRequested"}  # appended by the CLI or gateway
    cited = set()
    for handlers, named in walk_of_one_run(text):
        hop_publishes: set[str] = set()
        hop_consumes: set[str] = set()
        for service, handler in handlers:
            if (service, handler) not in table:
                problems.append(f"{service}.{handler} is cited but no route of {service} calls it")
                continue
            cited.add((service, handler))
            consumes = table[service, handler]
            if not consumes & available:
                problems.append(f"{service}.{handler} reacts to {sorted(consumes)}, which no earlier hop publishes")
            hop_consumes |= consumes
            hop_publishes |= published(service, handler)
            available |= published(service, handler)
        if missing := hop_publishes - named:
            problems.append(f"the hop of {handlers[0][1]} does not name what it publishes: {sorted(missing)}")
        if extra := named - hop_publishes - hop_consumes:
            problems.append(f"the hop of {handlers[0][1]} names {sorted(extra)}, which its handlers neither "
                            "publish nor react to")
    problems += [f"the walk never reaches {s}.{h}" for s, h in sorted(set(table) - cited)]
    return problems


def test_the_walk_of_one_run_follows_the_routes():
    assert walk_problems(DOC.read_text()) == []


def test_the_routes_are_read_from_the_services():
    table = routes()
    assert table["merger", "on_changes_reviewed"] == {"ChangesReviewed"}
    assert table["analyzer", "on_run_ended"] == {"PipelineCompleted", "PipelineFailed"}
    assert published("executor", "on_improvements_suggested") == {"ChangeApplied", "ChangeRejected", "ChangesCommitted"}
    assert published("analyzer", "on_merge_completed") == {"DocsUpdated", "PipelineCompleted"}


def test_a_walk_out_of_step_with_the_routes_is_caught():
    text = DOC.read_text()
    wrong_event = text.replace("→ `ImprovementsSuggested`", "→ `ChangesCommitted`")
    assert any("does not name what it publishes: ['ImprovementsSuggested']" in p for p in walk_problems(wrong_event))
    # The reviewer placed before the tester (review ran first once): it reacts to TestsCompleted.
    tester = "`services.tester.handlers.on_changes_committed`"
    reviewer = "`services.reviewer.handlers.on_tests_completed`"
    swapped = text.replace(tester, "@@").replace(reviewer, tester).replace("@@", reviewer)
    assert any("reviewer.on_tests_completed reacts to ['TestsCompleted']" in p for p in walk_problems(swapped))
    dropped = text.replace("`services.suggester.handlers.on_repo_analyzed`", "the suggester")
    assert "the walk never reaches suggester.on_repo_analyzed" in walk_problems(dropped)
