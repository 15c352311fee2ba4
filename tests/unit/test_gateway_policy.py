"""What the gateway accepts, decided by pure functions: ref names, fetchable URLs, its own log line."""

from __future__ import annotations

import pytest

from shared.app.requests import check_ref, check_remote
from shared.common.redaction import redact

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("ref", ["main", "v1.2.3", "feature/x-y", "a" * 40, "release/2026.12"])
def test_git_ref_names_pass(ref):
    check_ref(ref)


@pytest.mark.parametrize("ref", ["", "-uhack", "--upload-pack=x", "a..b", "x.lock", "a b", "@", ".hidden",
                                 "ok/.x", "x~1", "x^", "a:b", "a?", "a*", "a[", "a\\b", "a//b", "end/", "a@{1}"])
def test_what_git_would_refuse_or_read_as_an_option_is_refused(ref):
    with pytest.raises(ValueError, match="not a valid git ref name"):
        check_ref(ref)


def public(host):
    return ["140.82.112.3"]


def test_only_https_and_ssh_urls_of_public_hosts():
    for ok in ("https://github.com/a/b.git", "ssh://git@github.com/a/b.git", "git@github.com:a/b.git"):
        check_remote(ok, allow_local=False, allow_private=False, resolve=public)
    for bad, why in [("git://github.com/a", "scheme 'git'"), ("http://github.com/a", "scheme 'http'"),
                     ("file:///etc", "scheme 'file'"), ("/srv/repo", "local repository paths"),
                     ("https:///nohost", "names no host")]:
        with pytest.raises(ValueError, match=why):
            check_remote(bad, allow_local=False, allow_private=False, resolve=public)
    check_remote("/srv/repo", allow_local=True, allow_private=False, resolve=public)


def test_a_name_that_resolves_to_a_private_address_is_refused_unless_allowed():
    private = lambda host: ["140.82.112.3", "192.168.1.4"]  # noqa: E731 - one public, one private: refused
    with pytest.raises(ValueError, match="local or private address"):
        check_remote("https://intranet.example/x.git", allow_local=False, allow_private=False, resolve=private)
    check_remote("https://intranet.example/x.git", allow_local=False, allow_private=True, resolve=private)

    def unknown(host):
        raise OSError(-2, "Name or service not known")

    with pytest.raises(ValueError, match="cannot resolve host 'nowhere.invalid'"):
        check_remote("https://nowhere.invalid/x.git", allow_local=False, allow_private=False, resolve=unknown)


def test_the_gateways_listen_address_is_not_taken_for_a_secret():
    line = "Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)"
    assert redact(line) == line
    assert redact("Uvicorn running on http://[::]:8080") == "Uvicorn running on http://[::]:8080"
    assert "[REDACTED]" in redact("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
