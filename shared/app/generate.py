"""`repo-pilot generate`: grow a task with new features that pass their tests and conflict.

Registered by the main CLI as `app.command("generate")(generate)`. A task's attempts are jobs in
the event store like `request-generation`'s (`run_generation`, the one path of both): appended as
FeatureGenerationRequested and carried out by the generator service, in this process unless a cluster
is configured. `--validate`, `--prompt-only` and `--list-features` are checks that append nothing;
`--dataset` runs its tasks in this process (`shared.engines.generator.dataset`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.adapters.task_dir import load_task
from shared.common.settings import Settings
from shared.engines.generator.attempt import GenerateOptions, make_client, spending, validation_only
from shared.engines.generator.dataset import cost_text, run_dataset
from shared.events.gen import DEFAULT_MIN_MUTATION_SCORE, DEFAULT_MUTANTS
from shared.events.gen import FeatureGenerationRequested
from shared.policy.generation.prompt import build_prompt
from shared.policy.generation.proofs import PROOF_NAMES
from shared.policy.generation.task import Task
from shared.ports.errors import StepError

console = Console()
err = Console(stderr=True)
BACKENDS = ("auto", "docker", "local")


def _features_table(task: Task) -> Table:
    table = Table(title=f"Features of {task.name}")
    for column in ("#", "title", "files"):
        table.add_column(column)
    from shared.policy.generation.hotspots import touched_ranges

    for f in task.features:
        try:
            files = sorted({p for p, _, _ in touched_ranges(f.feature_patch)})
        except ValueError as exc:
            files = [f"(unparsable: {exc})"]
        table.add_row(str(f.number), f.title, ", ".join(files))
    return table


def _conflicts_table(conflicts: list[dict]) -> Table:
    table = Table(title="Merge against existing features")
    for column in ("feature", "status", "files", "union resolves", "detail"):
        table.add_column(column)
    for c in conflicts:
        style = {"conflict": "green", "clean": "yellow", "could_not_apply": "red"}[c["status"]]
        union = "" if c["union_resolves"] is None else ("yes" if c["union_resolves"] else "no")
        table.add_row(str(c["feature"]), f"[{style}]{c['status']}[/]", ", ".join(c["files"]), union, c["detail"][:120])
    return table


def _show_validation(result: dict[str, Any]) -> None:
    """A validation as result.json holds it (`ValidationResult.to_dict`)."""
    t = result["tests"]
    console.print(f"tests ({t['backend']}, counts from {t['source']}): {'[green]pass[/]' if t['passed'] else '[red]fail[/]'} — "
                  f"{t['counts']['passed']} passed, {t['counts']['failed']} failed, {t['counts']['errors']} errors"
                  + (" (timed out)" if t["timed_out"] else ""))
    for name in (n for n in PROOF_NAMES if n in result):  # none when validation stopped before the proofs
        proof = result[name]
        mark = "[green]yes[/]" if proof["ok"] else ("[dim]not run[/]" if not proof["ran"] else "[red]no[/]")
        console.print(f"  {name.replace('_', ' ')}: {mark}" + (f" — {escape(proof['reason'])}"
                                                                if proof["reason"] and proof["ran"] else ""),
                      highlight=False)
        for entry in proof["detail"] if name == "existing_tests" else []:
            console.print(f"    {escape(entry['what'])}: {entry['status']}"
                          + (f" — {escape(entry['reason'])}" if entry["reason"] else ""), highlight=False)
    console.print(_conflicts_table(result["conflicts"]))
    verdict = "[green]valid[/]" if result["valid"] else "[red]invalid[/]"
    console.print(f"{verdict}: {escape(result['reason'])}", highlight=False)


def _attempts_table(results: list[tuple[int, Path, dict[str, Any] | None]]) -> Table:
    table = Table(title="Attempts")
    for column in ("attempt", "valid", "tests", "conflicts with", "cost $", "steps", "folder", "reason"):
        table.add_column(column)
    for n, folder, r in results:
        if r is None:
            table.add_row(str(n), "[red]no[/]", "-", "-", "-", "-", str(folder), "no result.json: see the job's beads")
            continue
        v = r["validation"]
        tests = f"{v['tests']['counts']['passed']}✓ {v['tests']['counts']['failed']}✗" if v else "-"
        conflicts = ", ".join(map(str, v["conflicting_features"])) if v else "-"
        table.add_row(str(n), "[green]yes[/]" if r["valid"] else "[red]no[/]", tests, conflicts,
                      cost_text(r["cost_usd"]), str(r["steps"]), str(folder), escape(r["reason"][:100]))
    return table


def generate(
    task: Path | None = typer.Option(None, "--task", help="Task directory: dataset/<repo>_task/task<id>."),  # noqa: B008
    dataset: Path | None = typer.Option(  # noqa: B008
        None, "--dataset", help="A dataset folder: every task in it, resumable (summary.md in --output)."),
    concurrency: int = typer.Option(2, "--concurrency", min=1, help="Tasks at a time with --dataset."),
    repo_path: Path | None = typer.Option(None, "--repo-path", help="Local base repository."),  # noqa: B008
    attempts: int = typer.Option(1, "--attempts", min=1, help="Independent attempts to run."),
    output: Path = typer.Option(Path("generated"), "--output", help="Attempt folders go here."),  # noqa: B008
    model: str | None = typer.Option(None, "--model", help="Model name (default: OPENAI_MODEL)."),
    backend: str = typer.Option("auto", "--backend", help="Where tests run: docker, local or auto."),
    feature: int | None = typer.Option(None, "--feature", help="Collide with this existing feature's regions."),
    step_limit: int = typer.Option(30, "--step-limit", min=1, help="Agent steps per attempt."),
    cost_limit: float = typer.Option(1.0, "--cost-limit", help="Model spend per attempt, USD."),
    min_conflicts: int = typer.Option(1, "--min-conflicts", min=0, help="Conflicts a valid feature needs."),
    agent_network: bool = typer.Option(False, "--agent-network",
                                       help="Let the agent's shell reach the network (tasks that must install)."),
    prompt_only: bool = typer.Option(False, "--prompt-only", help="Print the agent's prompt and stop."),
    list_features: bool = typer.Option(False, "--list-features", help="List the task's features and stop."),
    validate: tuple[Path, Path] | None = typer.Option(
        None, "--validate", metavar="FEATURE_PATCH TESTS_PATCH",
        help="Validate an existing patch pair instead of generating."),
    mutants: int = typer.Option(DEFAULT_MUTANTS, "--mutants", min=1,
                                help="Mutants of the feature's added lines its new tests must kill."),
    min_mutation_score: float = typer.Option(DEFAULT_MIN_MUTATION_SCORE, "--min-mutation-score", min=0.0, max=1.0,
                                             help="Share of the mutants the new tests must kill."),
    all_proofs: bool = typer.Option(False, "--all-proofs", help="Run every proof, not only up to the first failure."),
    price_in: float | None = typer.Option(None, "--price-in", help="USD per million prompt tokens for --model."),
    price_out: float | None = typer.Option(None, "--price-out", help="USD per million completion tokens."),
    token_limit: int | None = typer.Option(None, "--token-limit", min=1,
                                           help="Tokens per attempt (what limits a model without a price)."),
    debug: bool = typer.Option(False, "--debug", help="Full tracebacks and debug logging."),
    local: bool | None = typer.Option(None, "--local/--no-local", help="Run the generator in this process "
                                      "(default: yes unless NATS_URL and DATABASE_URL point at a running cluster)."),
    timeout: float = typer.Option(3600, "--timeout", help="Give up following a job after this many seconds."),
) -> None:
    """Generate new task features that pass their tests and conflict with existing ones."""
    if backend not in BACKENDS:
        raise typer.BadParameter(f"must be one of {', '.join(BACKENDS)}", param_hint="--backend")
    if (task is None) == (dataset is None):
        raise typer.BadParameter("give exactly one of --task DIR or --dataset DIR", param_hint="--task")
    if debug:
        import logging

        logging.basicConfig(level=logging.DEBUG)
    try:
        price = _price(model, price_in, price_out, os.environ.get("REPO_PILOT_MODEL_PRICES", ""))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--price-in/--price-out") from None
    proof_options = {"mutants": mutants, "min_mutation_score": min_mutation_score, "all_proofs": all_proofs,
                     "price": price, "token_limit": token_limit}
    if dataset is not None:
        raise typer.Exit(_generate_dataset(dataset, output, attempts, concurrency, GenerateOptions(
            repo_path=str(repo_path) if repo_path else None, model=model, backend=backend, feature=feature,
            step_limit=step_limit, cost_limit_usd=cost_limit, min_conflicts=min_conflicts,
            agent_network=agent_network, **proof_options)))
    try:
        loaded = load_task(_task_dir(task))
        if list_features:
            console.print(_features_table(loaded))
            return
        if prompt_only:  # byte for byte the user message the agent gets (the system message is SYSTEM)
            sys.stdout.write(build_prompt(loaded, feature).prompt)
            sys.stdout.flush()
            return
        settings = Settings()  # read once, here at the edge
        options = GenerateOptions(
            repo_path=str(repo_path) if repo_path else None, model=model or settings.openai_model,
            backend=backend, feature=feature, step_limit=step_limit, cost_limit_usd=cost_limit,
            min_conflicts=min_conflicts, base_url=settings.openai_base_url, api_key=settings.openai_api_key,
            agent_network=agent_network, uv_cache_dir=settings.home / "uv-cache", **proof_options)
        if options.price is None and model is None:
            options.price = _price(options.model, None, None, os.environ.get("REPO_PILOT_MODEL_PRICES", ""))
        if validate and all(validate):
            feature_patch, tests_patch = (Path(p).read_text() for p in validate)
            result = validation_only(loaded, options, feature_patch, tests_patch, folder=output)
            _show_validation(result.to_dict())
            raise typer.Exit(0 if result.valid else 1)
        make_client(options)  # a missing endpoint is the user's to fix before any job is appended
        _say_spending(options)
        requests = build_generation_requests(
            loaded.path, attempts, output, repo_path=repo_path, model=options.model, backend=backend,
            feature=feature, step_limit=step_limit, cost_limit=cost_limit, min_conflicts=min_conflicts,
            agent_network=agent_network, mutants=mutants, min_mutation_score=min_mutation_score,
            all_proofs=all_proofs, price=options.price, token_limit=token_limit)
    except StepError as exc:
        if debug:
            console.print_exception()
        console.print(f"[red]error:[/] {escape(exc.message)}" + (f"\n[dim]{escape(exc.hint)}[/]" if exc.hint else ""))
        raise typer.Exit(2) from None
    from shared.app.process import arun  # the CLI's Ctrl-C / SIGTERM handling, as for `run`

    in_process = local if local is not None else not (settings.nats_url and settings.database_url)
    arun(run_generation(settings, requests, in_process, timeout))
    results = []
    for request in requests:
        folder = Path(request.output_dir) / f"attempt_{request.attempt}"
        written = folder / "result.json"
        result = json.loads(written.read_text()) if written.is_file() else None
        console.print(f"[bold]attempt {request.attempt}/{attempts}[/] on {loaded.name} with {options.model}")
        if result is not None and result["validation"] is not None:
            _show_validation(result["validation"])
        else:
            console.print(f"[red]attempt {request.attempt} failed:[/] {escape(result['reason'] if result else 'no result')}")
        results.append((request.attempt, folder, result))
    console.print(_attempts_table(results))
    raise typer.Exit(0 if any(r and r["valid"] for _, _, r in results) else 1)


async def run_generation(settings: Settings, requests: list[FeatureGenerationRequested], in_process: bool,
                         timeout: float, quiet: bool = False) -> int:
    """The one path of a generation job, for `generate` and `request-generation`: append one
    FeatureGenerationRequested per attempt to the store, follow each job's beads until it ends and
    print the jobs. With `in_process`, the embedded (or configured) servers, the relay, the projector
    and the generator service run in this process, as `repo-pilot run` does; otherwise the
    cluster's services do the work. 0 when an attempt is valid."""
    from shared.app import render
    from shared.app.runtime import System
    from shared.events import make_event, new_gen_stream
    from shared.store.projections import get_run

    rows = []
    async with System(settings, services=["generator"] if in_process else [], relay=in_process,
                      projector=in_process) as system:
        streams = []
        for request in requests:
            stream = new_gen_stream()
            await system.store.append(stream, [make_event(request, stream, service="cli")], 0)
            streams.append(stream)
            err.print(f"generation job [bold]{stream}[/] (attempt {request.attempt}) on {request.task_dir}")
        for stream in streams:
            run = await render.follow(system.store, stream, timeout, console=err)
            rows.append((stream, run, (await get_run(system.store, stream))[1]))
    render.print_generation(console, rows, requests[0].output_dir)
    return 0 if any(run and run["status"] == "COMPLETED" and run["passed"] for _, run, _ in rows) else 1


def _task_dir(task: Path) -> Path:
    """`--task` as given, else relative to `dataset/` as the original tool takes it."""
    if not task.exists() and (Path("dataset") / task).is_dir():
        return Path("dataset") / task
    return task


def _price(model: str | None, price_in: float | None, price_out: float | None,
           table: str) -> tuple[float, float] | None:
    """USD per million tokens for `model`: the flags, else REPO_PILOT_MODEL_PRICES
    (`model=in/out,…`); None leaves it to the price list. ValueError for a malformed setting."""
    if (price_in is None) != (price_out is None):
        raise ValueError("give both --price-in and --price-out")
    if price_in is not None and price_out is not None:
        return price_in, price_out
    for entry in filter(None, (e.strip() for e in table.split(","))):
        name, _, value = entry.partition("=")
        try:
            cost_in, cost_out = (float(v) for v in value.split("/"))
        except ValueError:
            raise ValueError(f"REPO_PILOT_MODEL_PRICES entry {entry!r} is not model=in/out "
                             "(USD per million tokens)") from None
        if model is not None and name.strip() == model:
            return cost_in, cost_out
    return None


def model_price_setting(model: str | None, price_in: float | None, price_out: float | None) -> tuple[float, float] | None:
    """`_price` with REPO_PILOT_MODEL_PRICES read here, at the edge (ValueError for a malformed one)."""
    return _price(model, price_in, price_out, os.environ.get("REPO_PILOT_MODEL_PRICES", ""))


def _say_spending(options: GenerateOptions) -> None:
    _, _, note = spending(options)
    if note:
        console.print(f"[yellow]cost:[/] {escape(note)}", highlight=False)


def _generate_dataset(dataset: Path, output: Path, attempts: int, concurrency: int, options: GenerateOptions) -> int:
    settings = Settings()  # read once, here at the edge
    options.model = options.model or settings.openai_model
    options.price = options.price or _price(options.model, None, None, os.environ.get("REPO_PILOT_MODEL_PRICES", ""))
    options.base_url, options.api_key = settings.openai_base_url, settings.openai_api_key
    options.uv_cache_dir = settings.home / "uv-cache"

    def done(task: str, n: int, result: dict) -> None:
        mark = "[green]valid[/]" if result["valid"] else "[red]invalid[/]"
        console.print(f"{task} attempt {n}: {mark} — {escape(result['reason'][:160])}", highlight=False)

    def repository(task: str, where: str) -> None:
        console.print(f"{task}: repository {escape(where)}", highlight=False)

    try:
        make_client(options)  # a missing endpoint is reported once, not once per task
        _say_spending(options)
        rows = asyncio.run(run_dataset(dataset, options, output, attempts, concurrency, on_attempt=done,
                                       on_repository=repository))
    except StepError as exc:
        console.print(f"[red]error:[/] {exc.message}" + (f"\n[dim]{exc.hint}[/]" if exc.hint else ""))
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: the same command resumes where this one stopped")
        return 130
    table = Table(title=f"Dataset {dataset}")
    for column in ("task", "attempts", "valid", "conflicts", "cost $", "time s", "resumed", "error"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.task, str(r.attempts), str(r.valid), ", ".join(map(str, r.conflicts)) or "-",
                      cost_text(r.cost_usd), f"{r.time_s:.1f}", str(r.resumed), escape(r.error[:80]))
    console.print(table)
    console.print(f"summary: {output / 'summary.md'}, {output / 'summary.json'}")
    return 0 if any(r.valid for r in rows) else 1


def build_generation_requests(task: Path, attempts: int, output: Path, *, repo_path: Path | None = None,
                              model: str | None = None, backend: str = "auto", feature: int | None = None,
                              step_limit: int = 30, cost_limit: float = 1.0, min_conflicts: int = 1,
                              agent_network: bool = False, mutants: int = DEFAULT_MUTANTS,
                              min_mutation_score: float = DEFAULT_MIN_MUTATION_SCORE, all_proofs: bool = False,
                              price: tuple[float, float] | None = None,
                              token_limit: int | None = None) -> list[FeatureGenerationRequested]:
    """One FeatureGenerationRequested per attempt, checked before anything is appended: the task
    loads, the backend is known, the paths are absolute (a service may run in another directory).
    Raises StepError with the reason."""
    if backend not in BACKENDS:
        raise StepError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    loaded = load_task(task)
    if feature is not None and feature not in {f.number for f in loaded.features}:
        raise StepError(f"--feature {feature}: {loaded.name} has features "
                        f"{', '.join(str(f.number) for f in loaded.features)}")
    if repo_path is not None and not Path(repo_path).exists():
        raise StepError(f"--repo-path {repo_path} does not exist")
    return [FeatureGenerationRequested(
        task_dir=str(loaded.path), repo_path=str(Path(repo_path).resolve()) if repo_path else None, attempt=n,
        output_dir=str(Path(output).resolve()), model=model, backend=backend, step_limit=step_limit,
        cost_limit_usd=cost_limit, min_conflicts=min_conflicts, feature=feature, agent_network=agent_network,
        mutants=mutants, min_mutation_score=min_mutation_score, all_proofs=all_proofs, price=price,
        token_limit=token_limit)
        for n in range(1, attempts + 1)]


def main() -> None:  # `python -m shared.app.generate`
    typer.run(generate)


if __name__ == "__main__":
    main()
