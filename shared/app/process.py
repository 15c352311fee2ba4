"""How a command's process starts and ends, shared by every command module (`cli`, `generate`):
the error console, one-line failures, Ctrl-C and SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import typer
from rich.console import Console

from shared.app.requests import RunInProgress

err = Console(stderr=True)
# Messages to a pipe or a CI log are not wrapped at rich's 80-column default: one message, one line.
err.soft_wrap = not err.is_terminal


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # unwrapped: one line in a log or a pipe
    raise typer.Exit(code)


class _Terminated(Exception):
    """SIGTERM arrived; everything the command had started has been stopped."""


async def _until_sigterm(coro):
    """Run `coro`; SIGTERM (what `docker stop` and systemd send) cancels it like Ctrl-C does, so
    every `async with System(...)` around the work stops it cleanly, and the process then exits
    normally (telemetry flushed at exit) instead of being killed by the signal's default action."""
    loop, task, got = asyncio.get_running_loop(), asyncio.current_task(), []

    def on_sigterm() -> None:
        got.append(True)
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await coro
    except asyncio.CancelledError:
        if got:
            raise _Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def arun(coro, *, sigterm_exit: int = 143):
    """Run a command's coroutine. Ctrl-C exits 130 and SIGTERM `sigterm_exit` (0 for the
    long-running `up`, `service` and `relay`, for which SIGTERM is the normal stop), each after
    what was started has been stopped."""
    from shared.app.embedded import ServerUnreachable
    from shared.store.errors import MigrationChanged

    try:
        return asyncio.run(_until_sigterm(coro))
    except (ServerUnreachable, MigrationChanged, RunInProgress) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None
    except _Terminated:
        err.print("stopped (SIGTERM)")
        raise typer.Exit(sigterm_exit) from None
