"""A stopping service cancels the step in hand: whatever the local sandbox was running for it (pytest,
pip, git, and what those started) must end with it, on the asyncio path and on the worker-thread
path (`task_commands.run_sync` under `in_thread`, as the generator's validation runs). Real
processes: a shell that starts a background grandchild, found from out here by a unique argument
(inside a pid namespace `$!` is not a pid out here), its process group checked with `killpg(pgid, 0)`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import uuid
from pathlib import Path

import pytest

from shared.adapters import task_commands
from shared.adapters.sandbox import LocalSandbox
from shared.common.tasks import cancel_until_done, in_thread

pytestmark = pytest.mark.integration


def _sleeps(token: str) -> list[int]:
    """Live (not zombie) `sleep <token>` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"sleep\x00{token}\x00".encode() not in entry.joinpath("cmdline").read_bytes():
                continue
            if entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def _process_groups_of(token: str, count: int = 2) -> set[int]:
    for _ in range(600):  # a confined start (namespaces, a mount view) takes a moment on a busy machine
        pids = _sleeps(token)
        if len(pids) >= count:
            return {os.getpgid(pid) for pid in pids}
        await asyncio.sleep(0.05)
    raise AssertionError(f"the command never started its {count} sleeps")


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def _assert_gone(pgids: set[int], token: str) -> None:
    for _ in range(600):  # generous: the kernel delivers the kill and the reaper runs
        if not any(_group_exists(pgid) for pgid in pgids) and not _sleeps(token):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still running after the cancel: groups {pgids}, sleeps {_sleeps(token)}")


def _token() -> str:
    return str(uuid.uuid4().int % 10**6 + 10**6)


def _sandbox(level: str, cgroup: bool) -> LocalSandbox:
    sandbox = LocalSandbox(isolation=level)
    if not cgroup:  # a machine without a pids cgroup: the process group is all there is to kill
        sandbox.confinement = dataclasses.replace(sandbox.confinement, cgroup=False)
    return sandbox


@pytest.mark.parametrize(("level", "cgroup"), [("none", False), ("auto", True)],
                         ids=["process-group-only", "confined"])
async def test_a_cancelled_run_leaves_no_process_of_its_group(level, cgroup, tmp_path):
    token = _token()
    run = asyncio.create_task(_sandbox(level, cgroup).run(["sh", "-c", f"sleep {token} & sleep {token}"],
                                                          cwd=tmp_path, timeout=600))
    pgids = await _process_groups_of(token)

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    await _assert_gone(pgids, token)


async def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_under_repeated_cancels(tmp_path):
    # SIGTERM ignored by the shell and (inherited) by its children: only the SIGKILL after the grace
    # ends them; the runtime's `stop` cancels again and again meanwhile, which must not cut it short.
    token = _token()
    run = asyncio.create_task(_sandbox("none", False).run(
        ["sh", "-c", f"trap '' TERM; sleep {token} & sleep {token}"], cwd=tmp_path, timeout=600))
    pgids = await _process_groups_of(token)

    assert await cancel_until_done(run, every=0.1) == set()

    assert run.cancelled()
    await _assert_gone(pgids, token)


async def test_a_cancel_reaches_a_command_run_from_a_worker_thread(tmp_path):
    token = _token()
    commands_started: list[int] = []
    thread_ended = threading.Event()

    def validation() -> None:  # the shape of the generator's validate_patches: runs one after another
        try:
            for n in range(3):
                commands_started.append(n)
                task_commands.run_sync(["sh", "-c", f"sleep {token} & sleep {token}"], tmp_path, timeout=600)
        finally:
            thread_ended.set()

    step = asyncio.create_task(in_thread(validation))
    pgids = await _process_groups_of(token)

    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step

    assert thread_ended.is_set()
    assert commands_started == [0]
    await _assert_gone(pgids, token)
