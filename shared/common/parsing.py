"""One lock for every `ast.parse` in a process: CPython 3.11's ast is not safe to use from several
threads at once (`SystemError: AST constructor recursion depth mismatch`, DESIGN section 8), and the
engines parse in worker threads (asyncio.to_thread) while other steps run."""

from __future__ import annotations

import threading

PARSE_LOCK = threading.RLock()
