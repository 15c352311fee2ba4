"""Parsing Python source safely: the one place `ast.parse` runs.

CPython 3.11's `ast` keeps its recursion bookkeeping in per-interpreter state, so two threads
building AST objects at once can raise `SystemError: AST constructor recursion depth mismatch`
(a known interpreter bug). Services parse from worker threads (`asyncio.to_thread`), so every parse
in the process goes through one lock here. Parsing is fast next to the I/O around it; one lock
costs little and removes the crash.

A source that cannot be parsed (bad syntax, NUL bytes, nesting too deep for the parser, too big to
hold) raises `SyntaxError` with the reason, never another exception type: callers record it as a
finding about the file rather than failing their step.
"""

from __future__ import annotations

import ast
import threading

# Re-entrant: a caller may hold it around a whole scan that parses file by file (rules engine).
PARSE_LOCK = threading.RLock()
_AST_LOCK = PARSE_LOCK


def parse_python(source: str | bytes, filename: str = "<unknown>") -> ast.Module:
    """`ast.parse(source)` serialised process-wide; any failure to parse is a SyntaxError."""
    with _AST_LOCK:
        try:
            return ast.parse(source, filename=filename)
        except SyntaxError:
            raise
        except (ValueError, RecursionError, MemoryError) as exc:
            # ValueError: NUL bytes; RecursionError/MemoryError: absurdly nested or huge sources.
            raise SyntaxError(f"cannot parse {filename}: {type(exc).__name__}: {exc}") from exc


def parse_error(source: str | bytes, filename: str = "<unknown>") -> str | None:
    """None when `source` parses, else the reason it does not (one line)."""
    try:
        parse_python(source, filename)
    except SyntaxError as exc:
        return str(exc)
    return None
