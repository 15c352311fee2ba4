"""The gateway fuzzed from its own OpenAPI document (schemathesis) against a live gateway on real
Postgres: no request, with or without the token, makes it answer 5xx, and every refusal is a 4xx
that says why (`detail`)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis.errors import Unsatisfiable
from hypothesis import settings as hsettings
from schemathesis.checks import not_a_server_error

from shared.app.gateway import create_app

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token"


@pytest.fixture
def live_url(settings):
    """A live gateway (its own store; a 'cluster' runs the work, so fuzzed requests start nothing)."""
    import uvicorn

    app = create_app(settings.model_copy(update={"api_token": TOKEN, "gateway_cluster": True}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.05):
        assert thread.is_alive(), "uvicorn did not start"
        if server.started:
            started.set()
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(30)


def _check(case, seen: list[int]) -> None:
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
        if case.path.endswith("/events/stream") and headers:
            continue  # a live stream of a run that never ends would hold the test
        response = case.call(headers=headers, timeout=30)
        seen.append(response.status_code)
        case.validate_response(response, checks=(not_a_server_error,))
        if 400 <= response.status_code < 500:
            body = response.json()
            assert body.get("detail"), (case.method, case.path, response.status_code, response.text)


def test_no_request_gets_a_5xx_and_every_refusal_says_why(live_url):
    # schemathesis's own pytest plugin does not load under this pytest; its strategies do.
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    # /readyz answers 503 by design while the log is not served (it is the probe's verdict, tested
    # in test_gateway.py); every other route must never give a 5xx.
    operations = [op for op in (result.ok() for result in schema.get_all_operations()) if op.path != "/readyz"]
    assert {(op.method.upper(), op.path) for op in operations} >= {("POST", "/runs"), ("GET", "/beads")}
    fuzz = hsettings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    seen: list[int] = []
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                fuzz(given(case=operation.as_strategy(generation_mode=mode))(lambda case: _check(case, seen)))()
            except Unsatisfiable:  # nothing to get wrong (e.g. /healthz takes no input)
                assert mode is schemathesis.GenerationMode.NEGATIVE

    assert len(seen) > 100 and 401 in seen and 200 in seen and {422, 404} <= set(seen), sorted(set(seen))
