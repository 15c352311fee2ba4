"""The three analysis documents, rendered from computed facts (pure over RepoFacts)."""

from __future__ import annotations

import re

from shared.engines.rules.facts import (
    Module,
    RepoFacts,
    _is_test_module,
    dependencies,
    entry_points,
    language_counts,
)
from shared.policy.docs import own_docs
from shared.policy.paths import is_test_path
from shared.ports.engine import Analysis

# Top-level import names that mean "talks to something outside the process".
EXTERNAL_SERVICES: dict[str, str] = {
    "requests": "HTTP (requests)", "httpx": "HTTP (httpx)", "aiohttp": "HTTP (aiohttp)", "urllib3": "HTTP (urllib3)",
    "urllib.request": "HTTP (urllib)", "http.client": "HTTP (http.client)", "grpc": "gRPC",
    "boto3": "AWS (boto3)", "botocore": "AWS (botocore)", "google.cloud": "Google Cloud", "azure": "Azure",
    "psycopg": "PostgreSQL (psycopg)", "psycopg2": "PostgreSQL (psycopg2)", "asyncpg": "PostgreSQL (asyncpg)",
    "sqlalchemy": "SQL database (SQLAlchemy)", "sqlite3": "SQLite", "pymysql": "MySQL", "MySQLdb": "MySQL",
    "pymongo": "MongoDB", "motor": "MongoDB", "redis": "Redis", "elasticsearch": "Elasticsearch",
    "kafka": "Kafka", "aiokafka": "Kafka", "confluent_kafka": "Kafka", "pika": "RabbitMQ", "aio_pika": "RabbitMQ",
    "nats": "NATS", "celery": "Celery", "smtplib": "SMTP (e-mail)", "paramiko": "SSH", "openai": "OpenAI API",
    "anthropic": "Anthropic API", "stripe": "Stripe", "docker": "Docker", "socket": "raw sockets",
}  # fmt: skip

# Module-name words that place a module in a layer, checked in this order.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("tests", ("tests", "test", "conftest")),
    ("entry points", ("cli", "__main__", "main", "app", "commands", "cmd", "manage", "wsgi", "asgi")),
    ("interface (API / web)", ("api", "views", "routes", "handlers", "endpoints", "web", "server", "http")),
    ("services", ("service", "services", "usecases", "tasks", "jobs", "workers", "reports", "reporting")),
    ("domain", ("models", "model", "domain", "entities", "schemas", "types")),
    (
        "persistence",
        ("store", "storage", "db", "database", "repository", "repositories", "dao", "orm", "cache"),
    ),
    ("configuration", ("config", "settings", "conf", "constants")),
    ("utilities", ("utils", "util", "helpers", "common", "lib", "tools")),
)


def _node(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def internal_target(imported: str, internal: set[str]) -> str | None:
    """The internal module an import refers to (longest matching prefix), if any."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in internal:
            return candidate
    return None


def import_edges(modules: list[Module]) -> list[tuple[str, str]]:
    internal = {m.name for m in modules}
    edges = set()
    for m in modules:
        for imported in m.imports:
            target = internal_target(imported, internal)
            if target and target != m.name:
                edges.add((m.name, target))
    return sorted(edges)


def mermaid_graph(modules: list[Module]) -> str:
    """The internal import graph as Mermaid `graph TD` (an arrow means "imports")."""
    lines = ["graph TD"]
    for m in modules:
        lines.append(f'    {_node(m.name)}["{m.name}"]')
    for source, target in import_edges(modules):
        lines.append(f"    {_node(source)} --> {_node(target)}")
    return "\n".join(lines)


def layer_of(module: Module) -> str:
    if _is_test_module(module.path):
        return "tests"
    words = set(re.split(r"[._]", module.name.lower()))
    for layer, keys in LAYERS[1:]:
        if words.intersection(keys):
            return layer
    return "core" if not module.is_package else "packages"


def external_services(modules: list[Module]) -> dict[str, list[str]]:
    """Service → modules that import a client for it."""
    found: dict[str, set[str]] = {}
    for m in modules:
        for imported in m.imports:
            for key, service in EXTERNAL_SERVICES.items():
                if imported == key or imported.startswith(key + "."):
                    found.setdefault(service, set()).add(m.name)
    return {service: sorted(mods) for service, mods in sorted(found.items())}


def third_party_imports(modules: list[Module]) -> list[str]:
    import sys

    internal_tops = {m.name.split(".")[0] for m in modules}
    tops = {i.split(".")[0] for m in modules for i in m.imports}
    return sorted(t for t in tops if t and t not in internal_tops and t not in sys.stdlib_module_names)


def stats(facts: RepoFacts) -> dict:
    py_lines = sum(m.lines for m in facts.modules)
    return {
        "files": len(facts.files),
        "python_files": len(facts.python_files),
        "python_lines": py_lines,
        "languages": language_counts(facts.files),
        "packages": sorted(p.name for p in facts.packages),
        "modules": len(facts.modules),
        "test_files": sum(1 for m in facts.modules if _is_test_module(m.path)),
        "public_functions": sum(len(m.functions) for m in facts.modules if not _is_test_module(m.path)),
        "public_classes": sum(len(m.classes) for m in facts.modules if not _is_test_module(m.path)),
        "parse_errors": sorted(m.path for m in facts.modules if m.parse_error),
        "skipped_files": dict(sorted(facts.skipped.items())[:50]),  # over budget or binary: never parsed
        "dependencies": dependencies(facts),
        "own_docs": own_docs(facts.files),
    }


def _specification(facts: RepoFacts, st: dict) -> str:
    desc = facts.project.get("description") or facts.setup_cfg.get("metadata", {}).get("description") or ""
    out = [f"# {facts.name} — specification", ""]
    if desc:
        out += [desc, ""]
    out += ["Computed from the source by static analysis (no model involved).", "", "## Entry points", ""]
    foreign = facts.language not in (None, "python")
    points = entry_points(facts) + (_package_json_points(facts) if facts.language == "javascript" else [])
    out += [f"- {p}" for p in points] or (
        [
            f"- not known: this is a {facts.language} project and the analyzer reads only Python sources and "
            "package metadata"
        ]
        if foreign
        else ["- none declared"]
    )
    out += ["", "## Dependencies", ""]
    out += [f"- `{d}`" for d in st["dependencies"]] or ["- none declared"]
    if facts.requires_python:
        out += ["", f"Requires Python `{facts.requires_python}`."]
    out += ["", "## Modules", ""]
    for m in facts.modules:
        if _is_test_module(m.path):
            continue
        out.append(f"### `{m.name}` ({m.path}, {m.lines} lines)")
        if m.parse_error:
            out.append(f"Does not parse: {m.parse_error}")
        if m.docstring:
            out.append(m.docstring)
        if m.classes:
            out.append("- classes: " + ", ".join(f"`{c}`" for c in m.classes))
        if m.functions:
            out.append("- functions: " + ", ".join(f"`{f}`" for f in m.functions))
        if m.all_names is not None:
            out.append("- `__all__`: " + ", ".join(f"`{n}`" for n in m.all_names))
        out.append("")
    if facts.skipped:
        out += ["## Not analysed", "", "Over the size budget or binary, so no tool read them:", ""]
        out += [f"- {rel}: {why}" for rel, why in sorted(facts.skipped.items())[:50]] + [""]
    tests = [f for f in facts.files if is_test_path(f)]  # by path, whatever the language
    out += ["## Tests", ""]
    out += [f"- {t}" for t in tests[:200]] or [
        "- no test files found (by the test-file conventions of Python, JavaScript, Go and Rust)"
    ]
    if len(tests) > 200:
        out.append(f"- … and {len(tests) - 200} more")
    if foreign:
        out += [
            "",
            f"The modules above are the Python ones only; the {facts.language} sources were not read.",
        ]
    return "\n".join(out).rstrip() + "\n"


def _package_json_points(facts: RepoFacts) -> list[str]:
    """`bin` commands and the `main` module of a package.json (what `npm` exposes)."""
    import json

    try:
        data = json.loads((facts.root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    bins = data.get("bin")
    if isinstance(bins, str):
        bins = {str(data.get("name", "bin")): bins}
    points = [
        f"`{k}` → `{v}` (package.json bin)" for k, v in sorted((bins or {}).items()) if isinstance(v, str)
    ]
    for key in ("main", "module"):
        if isinstance(data.get(key), str):
            points.append(f"`{data[key]}` (package.json {key})")
    return points


def _graph(facts: RepoFacts) -> str:
    code = [m for m in facts.modules if not _is_test_module(m.path)]
    edges = import_edges(code)
    return (
        f"# {facts.name} — module import graph\n\nAn arrow `a --> b` means module `a` imports `b` "
        f"({len(code)} modules, {len(edges)} imports; tests left out).\n\n```mermaid\n{mermaid_graph(code)}\n```\n"
    )


def _architecture(facts: RepoFacts, st: dict) -> str:
    layers: dict[str, list[str]] = {}
    for m in facts.modules:
        layers.setdefault(layer_of(m), []).append(m.name)
    order = [name for name, _ in LAYERS[1:]] + ["core", "packages", "tests"]
    out = [f"# {facts.name} — architecture", "", "## Layers", ""]
    out.append("Modules placed by name (a heuristic: the names say what a module is for).")
    out.append("")
    for layer in order:
        if layer in layers:
            out.append(f"- **{layer}**: " + ", ".join(f"`{n}`" for n in sorted(layers[layer])))
    out += ["", "## External services", ""]
    services = external_services(facts.modules)
    out += [f"- {s}: used by " + ", ".join(f"`{m}`" for m in mods) for s, mods in services.items()] or [
        "- none detected (no imports of network, database or cloud clients)"
    ]
    out += ["", "## Third-party imports", ""]
    out += [f"- `{t}`" for t in third_party_imports(facts.modules)] or ["- none"]
    langs = ", ".join(f"{k} ({v})" for k, v in st["languages"].items())
    size = (
        f"{st['files']} files ({langs}); {st['python_lines']} lines of Python in {st['modules']} modules; "
        f"packages: {', '.join(st['packages']) or 'none'}."
    )
    out += ["", "## Size", "", size]
    return "\n".join(out) + "\n"


def analyze_facts(facts: RepoFacts) -> Analysis:
    st = stats(facts)
    return Analysis(
        specification=_specification(facts, st),
        graph=_graph(facts),
        architecture=_architecture(facts, st),
        stats=st,
    )
