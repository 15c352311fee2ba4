"""Hypothesis's ghostwriter, run with the target's interpreter in its working copy (it imports the code)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from shared.adapters.sandbox import Sandbox

_SCRIPT = r"""
import importlib, json, sys
sys.path[:0] = [p for p in (".", "src") if p not in sys.path]
from hypothesis.extra import ghostwriter
out = {}
for module_name, names in json.loads(sys.argv[1]).items():
    try:
        module = importlib.import_module(module_name)
        funcs = [getattr(module, n) for n in names if callable(getattr(module, n, None))]
        if funcs:
            out[module_name] = ghostwriter.magic(*funcs, except_=(Exception,))
    except Exception as exc:
        out[module_name] = "#error " + type(exc).__name__ + ": " + str(exc)[:200]
print(json.dumps(out))
"""
# Unbounded sizes make a fuzz test of `make_token(length)` allocate gigabytes; bound them.
_BOUNDS = (("st.integers()", "st.integers(min_value=-1000, max_value=1000)"),
           ("st.text()", "st.text(max_size=50)"), ("st.binary()", "st.binary(max_size=50)"))  # fmt: skip


async def ghostwrite(sandbox: Sandbox, repo: Path, python: str, functions: dict[str, list[str]]) -> dict[str, str]:
    """Property-based test modules, by module name, for `functions` (module -> function names).

    A module that fails to import or to ghostwrite is left out (its reason is logged in the value
    `#error …`, which callers skip)."""
    if not functions:
        return {}
    result = await sandbox.run([python, "-c", _SCRIPT, json.dumps(functions)], cwd=Path(repo), timeout=180)
    if result.exit_code != 0:
        return {m: f"#error ghostwriter failed: {result.stderr.strip()[-300:]}" for m in functions}
    try:
        written = json.loads(result.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {m: "#error ghostwriter printed no result" for m in functions}
    out = {}
    for module, text in written.items():
        for loose, bounded in _BOUNDS:
            text = text.replace(loose, bounded)
        out[module] = re.sub(r"^# (This test code was written by|and is provided under) .*\n", "", text,
                             flags=re.MULTILINE)
    return out
