"""The rules engine's facts parse modules on first use, from the bytes `collect` read."""

from __future__ import annotations

import pytest

from shared.engines.rules import facts as facts_mod

pytestmark = pytest.mark.unit


def test_modules_are_parsed_from_what_collect_read_not_from_later_edits(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('"""Pkg."""\ndef first():\n    import json\n')
    facts = facts_mod.collect(tmp_path)
    (tmp_path / "pkg" / "__init__.py").write_text("def second():\n    pass\n")  # a rule edits the copy
    (module,) = facts.modules
    assert module.name == "pkg" and module.functions == ["first"] and module.imports == ["json"]
    assert facts.sources == {}  # parsed once: the bytes are let go


def test_big_and_binary_files_are_skipped_without_being_read_into_the_facts(tmp_path):
    (tmp_path / "big.py").write_text("x = 1\n" * 300_000)  # 1.8 MB: over the per-file budget
    (tmp_path / "blob.py").write_bytes(b"\x00\x01" * 10)
    (tmp_path / "ok.py").write_text("y = 2\n")
    facts = facts_mod.collect(tmp_path)
    assert set(facts.sources) == {"ok.py"}
    assert set(facts.skipped) == {"big.py", "blob.py"}
    assert [m.path for m in facts.modules] == ["ok.py"]


def test_an_unchanged_source_is_not_parsed_again(tmp_path):
    source = (b"def f():\n    if True:\n        from os import path\n"
              b"    try:\n        pass\n    except ImportError:\n        import json\n")
    first = facts_mod.parse_modules({"m.py": source})
    again = facts_mod.parse_modules({"m.py": source})
    changed = facts_mod.parse_modules({"m.py": source + b"def g():\n    pass\n"})
    assert again[0] is first[0]
    assert first[0].imports == ["json", "os"]  # imports nested in blocks and handlers count
    assert changed[0] is not first[0] and changed[0].functions == ["f", "g"]


def test_a_caller_given_modules_keeps_them():
    facts = facts_mod.RepoFacts(root=__import__("pathlib").Path("."), name="p", files=["a.py"], modules=[])
    assert facts.modules == []
