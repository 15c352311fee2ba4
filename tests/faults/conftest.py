"""The fault suite: real OS processes, real NATS and PostgreSQL (private ones where a scenario
kills or restarts them), small loads by default, the full size with REPO_PILOT_FAULTS=full
(`make faults`). Each scenario appends its figures as one JSON line to REPO_PILOT_FAULTS_REPORT
(default: faults-report.jsonl in the pytest temp dir) and prints them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.cluster import Cluster


@pytest.fixture
async def cluster_factory(tmp_path, database_url):
    made: list[Cluster] = []

    async def make(**options) -> Cluster:
        options.setdefault("database_url", database_url)
        cluster = await Cluster(tmp_path / f"cluster{len(made)}", **options).start()
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


@pytest.fixture
def report(tmp_path_factory):
    path = Path(os.environ.get("REPO_PILOT_FAULTS_REPORT") or tmp_path_factory.getbasetemp() / "faults-report.jsonl")

    def write(scenario: str, outcome) -> None:
        line = outcome.line(scenario)
        print(line)
        with path.open("a") as f:
            f.write(line + "\n")

    return write
