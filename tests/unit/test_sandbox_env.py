"""The sandbox's environment: what a package install needs passes, credentials never do."""

import pytest

from shared.adapters.sandbox import PACKAGE_INSTALL_ENV, scrubbed_env

pytestmark = pytest.mark.unit


def test_install_settings_pass_and_credentials_are_scrubbed(monkeypatch):
    passing = {"UV_INDEX_URL": "http://127.0.0.1:1/simple", "PIP_INDEX_URL": "https://mirror/simple",
               "HTTPS_PROXY": "http://proxy:3128", "no_proxy": "localhost", "SSL_CERT_FILE": "/etc/ca.pem",
               "REQUESTS_CA_BUNDLE": "/etc/ca.pem", "UV_NATIVE_TLS": "1"}
    secret = {"OPENAI_API_KEY": "sk-x", "GITHUB_TOKEN": "ghp-x", "AWS_SECRET_ACCESS_KEY": "x",
              "DATABASE_URL": "postgresql://u:p@h/db", "UV_PUBLISH_TOKEN": "x", "SOME_UNLISTED": "x"}
    for name, value in {**passing, **secret}.items():
        monkeypatch.setenv(name, value)
    env = scrubbed_env()
    assert {k: env.get(k) for k in passing} == passing
    assert not set(secret) & set(env)
    assert set(passing) <= set(PACKAGE_INSTALL_ENV)
    assert "OPENAI_API_KEY" not in scrubbed_env({"OPENAI_API_KEY": "sk-x"})  # not even when handed in
