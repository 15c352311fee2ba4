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


def test_embedded_nats_refuses_a_client_without_the_password(tmp_path):
    """Any local process could publish a forged event to an open bus; the embedded one needs the
    generated password, stored readable only by the user under REPO_PILOT_HOME."""
    import os
    import stat
    from urllib.parse import urlparse

    from shared.app.embedded import ServerUnreachable

    home = tmp_path / "home"
    nats_url = ensure_nats(home)
    try:
        url = urlparse(nats_url)
        password_file = home / "nats" / "password"
        assert url.password == password_file.read_text().strip() and len(url.password) >= 24
        assert stat.S_IMODE(os.stat(password_file).st_mode) == 0o600
        asyncio.run(check_nats(nats_url))
        with pytest.raises(ServerUnreachable) as refused:
            asyncio.run(check_nats(f"nats://127.0.0.1:{url.port}"))
        assert "authorization" in str(refused.value).lower()
        with pytest.raises(ServerUnreachable) as wrong:
            asyncio.run(check_nats(f"nats://repo-pilot:guess@127.0.0.1:{url.port}"))
        assert "guess" not in str(wrong.value)  # the message never repeats a password
    finally:
        stop_servers(home)
