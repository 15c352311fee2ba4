"""A real llama.cpp inference server (llama-cpp-python's OpenAI-compatible server) on the tiny
model of tiny_gguf.py, for the compatibility tests that must talk to the real thing.

llama-cpp-python is an optional extra (`pip install -e '.[compat]'`, `make compat`): it compiles
llama.cpp, minutes on a small machine. Tests that use this skip, saying so, where it is missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path



def available() -> str | None:
    """Why the real server cannot run here, or None."""
    for module in ("llama_cpp.server", "gguf"):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} is not installed (pip install -e '.[compat]'; make compat): {exc}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(workdir: Path) -> Iterator[str]:
    """Start the server on a free port; yields its OpenAI base URL (…/v1); stops it after."""
    from tests.support import tiny_gguf  # numpy and gguf come with the compat extra only

    model = tiny_gguf.write(workdir / "tiny.gguf")
    port = _free_port()
    log = (workdir / "llama-server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", str(tiny_gguf.CONTEXT), "--n_threads", str(min(2, os.cpu_count() or 1))],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server did not start:\n{(workdir / 'llama-server.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
