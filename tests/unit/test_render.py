"""Bead details in the CLI's views: shortened at a word with an ellipsis, never mid-word."""

from __future__ import annotations

import pytest
from rich.console import Console

from shared.app.render import bead_table, progress_lines, shorten

pytestmark = pytest.mark.unit

REASON = ("the change adds findings under the project's configuration: ruff E501 line too long in "
          "widgets/core.py:12, mypy error: incompatible return value type in widgets/core.py:40, "
          "and the repository's own tests regressed from 12/12 to 11/12 passed (test_describe)")


def bead(status="FAILED", error=REASON, duration_ms=1500):
    return {"bead_id": "execute", "title": "execute", "status": status, "duration_ms": duration_ms,
            "error": error, "metadata": {}, "kind": "step"}


def test_shorten_cuts_at_a_word_with_an_ellipsis():
    cut = shorten(REASON, 100)
    assert len(cut) <= 100 and cut.endswith(" …")
    assert REASON.startswith(cut.removesuffix(" …"))  # whole words, the text's own order
    assert REASON[len(cut.removesuffix(" …"))] == " "  # the cut falls between words
    assert shorten("line one\n  line two", 100) == "line one line two"
    assert shorten("x" * 50, 20) == "x" * 19 + "…"  # one word longer than the limit


def test_the_table_wraps_details_to_the_width_and_full_shows_everything():
    console = Console(width=120, record=True, color_system=None)
    console.print(bead_table(None, [bead()]))
    text = console.export_text()
    assert "test_describe" not in text and "…" in text
    assert max(len(line) for line in text.splitlines()) <= 120
    console.print(bead_table(None, [bead()], full=True))
    assert "(test_describe)" in console.export_text()


def test_progress_lines_say_each_change_once():
    seen: dict = {}
    run = {"run_id": "run-1", "status": "RUNNING"}
    assert progress_lines(seen, run, [bead("PENDING", None, None)]) == ["run run-1: RUNNING"]
    assert progress_lines(seen, run, [bead("RUNNING", None, None)]) == ["execute: RUNNING"]
    assert progress_lines(seen, run, [bead("RUNNING", None, None)]) == []
    ended = progress_lines(seen, {**run, "status": "FAILED"}, [bead()])
    assert ended == [f"execute: FAILED 1.5s — {REASON}", "run run-1: FAILED"]  # full text in a log


def test_a_suite_summary_says_what_the_rest_of_the_total_was():
    from shared.app.render import suite_summary

    group = {"group": "own", "total": 383, "passed": 323, "failed": 0, "errors": 0, "skipped": 60}
    assert suite_summary(group) == "323/383 passed (60 skipped)"  # not 60 failing
    assert suite_summary({**group, "passed": 320, "failed": 3, "skipped": 60}) == "320/383 passed (3 failed, 60 skipped)"
    assert suite_summary({**group, "passed": 383, "skipped": 0}) == "383/383 passed"
