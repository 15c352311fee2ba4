"""Fixtures shared by the e2e runs of the llm engine: a scripted OpenAI-compatible server and the
test's settings pointed at it."""

from __future__ import annotations

import pytest

from tests.support.model_server import ScriptedModelServer


@pytest.fixture
def server():
    with ScriptedModelServer() as s:
        yield s


@pytest.fixture
def llm_settings(settings, server):
    # A priced model name, so cost accounting is exercised too.
    return settings.model_copy(
        update={"openai_base_url": server.base_url, "openai_api_key": "test", "openai_model": "gpt-4.1-mini"}
    )
