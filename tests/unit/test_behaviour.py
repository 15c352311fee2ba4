"""Which fixes keep behaviour, and where a behaviour-changing one is justified (shared/policy/behaviour.py),
and the `random` -> `secrets` site fix that follows it (rules engine)."""

from __future__ import annotations

import pytest

from shared.engines.rules.implement import implement
from shared.events import Improvement
from shared.policy.behaviour import changes_behaviour, fix_of, is_secret_name, judge_site
from shared.ports.errors import ChangeRejectedError

pytestmark = pytest.mark.unit

SOURCE = '''"""Sessions and retries."""

import random
import string


def new_session_token(n: int = 16) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(random.choice(alphabet) for _ in range(n))


def retry_delay(attempt: int, base: float = 0.1) -> float:
    return base * 2**attempt + random.uniform(0, base)


def login(user):
    raw = random.getrandbits(64)
    value = hex(raw)
    set_cookie(user, session_id=value)


def describe(value: int | None = None, other=None):
    if value == None:
        return 1
    if other == None:
        return 2


def lines(items):
    for x in items:
        try:
            yield x
        except KeyError:
            pass
'''


def test_random_is_fixed_only_where_its_value_feeds_a_secret():
    token = judge_site("S311", SOURCE, "app/session.py", 9)
    assert token.ok and "returned by `new_session_token()`" in token.reason
    jitter = judge_site("S311", SOURCE, "app/session.py", 13)
    assert not jitter.ok and "seeding `random`" in jitter.reason
    through_variables = judge_site("S311", SOURCE, "app/session.py", 17)
    assert through_variables.ok and "session_id=" in through_variables.reason


def test_unsafe_and_context_dependent_lint_fixes():
    assert judge_site("E711", SOURCE, "app/session.py", 23, ruff_unsafe=True).ok  # `value: int | None`
    assert not judge_site("E711", SOURCE, "app/session.py", 25, ruff_unsafe=True).ok  # unknown type
    assert not judge_site("SIM105", SOURCE, "app/session.py", 31).ok  # inside a generator
    assert not judge_site("SIM300", "assert 1 == x\n", "tests/test_eq.py", 1).ok
    assert judge_site("SIM300", "ok = 1 == x\n", "app/eq.py", 1).ok
    unknown = judge_site("UP999", "x = 1\n", "app/a.py", 1, ruff_unsafe=True)
    assert not unknown.ok and "unsafe" in unknown.reason  # unsafe and not known safe: never applied
    assert judge_site("UP032", "x = 1\n", "app/a.py", 1).ok  # a safe fix keeps behaviour
    assert fix_of("UP032").preserves and not fix_of("pixee:python/secure-random").preserves


SECRET_NAMES = ["session_token", "makePassword", "csrf_nonce", "salt", "API_KEY", "api_key", "secret_key",
                "session_key", "private_key", "signingKey", "apikey", "token", "auth_token", "csrftoken", "password",
                "nonce", "session_id", "otp", "reset_code", "api_keys"]  # fmt: skip
NOT_SECRET_NAMES = ["retry_delay", "jitter", "sample", "shuffle_items", "monkey", "key", "sort_key", "cache_key",
                    "key_func", "keyfunc", "primary_key", "dict_key", "keys", "session", "zip_code", "user_id",
                    "max_tokens", "token_count", "tokenize", "tokenizer", "password_length"]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_names_that_hold_secrets(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", NOT_SECRET_NAMES)
def test_names_that_do_not_hold_secrets(name):
    assert not is_secret_name(name)


def test_a_sort_or_cache_key_is_not_a_secret_but_an_api_key_is():
    source = (
        "import random\n\n\ndef pick(items):\n    return sorted(items, key=lambda _: random.random())\n\n\n"
        "def cache(store, value):\n    cache_key = random.getrandbits(32)\n    store[cache_key] = value\n\n\n"
        "def new_client():\n    api_key = random.getrandbits(128)\n    return api_key\n"
    )
    assert not judge_site("S311", source, "app/k.py", 5).ok
    assert not judge_site("S311", source, "app/k.py", 9).ok
    assert judge_site("S311", source, "app/k.py", 14).ok


def test_rules_that_change_behaviour():
    assert changes_behaviour("fix:secure-random") and changes_behaviour("lint-unsafe:E711")
    assert not changes_behaviour("lint:F401") and not changes_behaviour("check:license")


def _improvement(changes: str) -> Improvement:
    return Improvement(id="security-secure-random", category="security", title="t", rationale="r",
                       files=["app/session.py"], changes=changes, rule="fix:secure-random")  # fmt: skip


def test_the_site_fix_changes_the_token_and_leaves_the_jitter(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "session.py").write_text(SOURCE)
    changes = "\n".join(f"- `app/session.py:{n}` S311: random" for n in (9, 13))
    done = implement(tmp_path, _improvement(changes))
    text = (tmp_path / "app" / "session.py").read_text()
    assert 'return "".join(secrets.SystemRandom().choice(alphabet)' in text
    assert "random.uniform(0, base)" in text  # the jitter stays reproducible under random.seed
    assert "import random\nimport secrets\nimport string\n" in text
    assert done.files == ["app/session.py"] and "Left as is (1)" in done.summary


def test_no_site_in_a_secret_context_is_a_proposal_with_its_reason(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "session.py").write_text(SOURCE)
    with pytest.raises(ChangeRejectedError, match="proposed, not applied.*retry_delay"):
        implement(tmp_path, _improvement("- `app/session.py:13` S311: random"))
    assert (tmp_path / "app" / "session.py").read_text() == SOURCE


def test_an_unused_import_that_a_module_may_re_export_is_kept():
    compat = '"""Deprecated."""\nimport warnings\nwarnings.warn("old")\n\nimport sys\nfrom collections.abc import Sequence\n'
    assert not judge_site("F401", compat, "pkg/other.py", 6).ok  # after the module's code: a re-export
    assert not judge_site("F401", "import os\n", "pkg/compat.py", 1).ok
    assert not judge_site("F401", "from .a import b\n", "pkg/__init__.py", 1).ok
    assert judge_site("F401", '"""Doc."""\n\nimport os\nimport sys\n\nX = sys.argv\n', "pkg/a.py", 3).ok
    assert judge_site("F401", "def f():\n    import json\n", "pkg/a.py", 2).ok
    assert judge_site("F401", "x = 1\nimport os\n", "tests/test_a.py", 2).ok


SEEDED = (
    "def sample(prob, seq, random_state=None):\n"
    "    if not hasattr(random_state, 'random'):\n"
    "        from random import Random\n\n"
    "        random_state = Random(random_state)\n"
    "    return [x for x in seq if random_state.random() < prob]\n\n\n"
    "def new_token(n):\n"
    "    from random import choice\n\n"
    "    return ''.join(choice('abcdef') for _ in range(n))\n"
)


def test_imports_inside_functions_count_and_a_seeded_generator_is_left_with_its_reason(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "session.py").write_text(SEEDED)
    done = implement(tmp_path, _improvement("- `app/session.py:5` S311: random\n- `app/session.py:12` S311: random"))
    text = (tmp_path / "app" / "session.py").read_text()
    assert "return ''.join(secrets.SystemRandom().choice('abcdef')" in text  # imported in the function
    assert "random_state = Random(random_state)" in text  # never `secrets.SystemRandom().Random(…)`
    assert "app/session.py:5: builds or seeds a generator of its own" in done.summary
    assert "no call of" not in done.summary
