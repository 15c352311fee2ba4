"""Embedded servers start, are reused across commands, and stop cleanly."""

from __future__ import annotations

import asyncio

import pytest

from shared.app.embedded import (
    _port_open,
    check_nats,
    check_postgres,
    ensure_nats,
    ensure_postgres,
    stop_servers,
)

pytestmark = pytest.mark.integration


def test_embedded_servers_start_reuse_and_stop(tmp_path):
    home = tmp_path / "home"
    nats_url = ensure_nats(home)
    dsn = ensure_postgres(home)
    try:
        asyncio.run(check_nats(nats_url))
        asyncio.run(check_postgres(dsn))
        assert ensure_nats(home) == nats_url  # a second command reuses the running server
        port = int(nats_url.rsplit(":", 1)[1])
    finally:
        stopped = stop_servers(home)
    assert any(s.startswith("nats") for s in stopped) and "postgres" in stopped
    assert not _port_open("127.0.0.1", port)
    assert not (home / "postgres" / "postmaster.pid").exists()
