"""A redelivered event at every step creates no duplicate commit, event, PR or merge."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from shared.app.runtime import PIPELINE_SERVICES, System
from shared.events import PipelineRequested, make_event, new_run_stream
from tests.support.pipeline import wait_for_run

pytestmark = pytest.mark.e2e


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


async def test_every_event_delivered_again_changes_nothing(settings, tmp_path):
    from shared.examples import make_demo_repo

    repo = make_demo_repo(tmp_path / "inventory")
    async with System(settings, services=list(PIPELINE_SERVICES)) as system:
        stream = new_run_stream()
        await system.store.append(stream, [make_event(PipelineRequested(repo=str(repo), engine="rules"), stream)], 0)
        run, _ = await wait_for_run(system.store, stream)
        assert run["status"] == "COMPLETED" and run["merged"]
        events = await system.store.read_stream(stream)
        main_log = _git(repo, "rev-list", "--all")
        requests = json.loads((repo / ".git" / "repo-pilot" / "requests.json").read_text())

        # Deliver every event of the run again, as JetStream would after a lost ack (new msg ids
        # so the server's dedupe window doesn't hide them: only our tracking rows can).
        js = system._nc.jetstream()
        for event in events:
            await js.publish(event.subject(settings.subject_prefix), event.to_json().encode(),
                             headers={"Nats-Msg-Id": f"again-{event.event_id}"}, stream=settings.stream_name)
        # Wait until every durable consumer has drained what was just delivered.
        for _ in range(200):
            infos = [await js.consumer_info(settings.stream_name, name) for name in PIPELINE_SERVICES]
            if all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("consumers did not drain the redelivered events")
        await asyncio.sleep(0.5)
        again = await system.store.read_stream(stream)

    assert [e.event_id for e in again] == [e.event_id for e in events]  # no new event at all
    assert _git(repo, "rev-list", "--all") == main_log  # no new commit, no second merge
    assert json.loads((repo / ".git" / "repo-pilot" / "requests.json").read_text()) == requests  # no second PR
