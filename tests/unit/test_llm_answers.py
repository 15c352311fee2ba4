"""Reading model answers tolerantly, review scores under other names, and endpoint modes (pure)."""

from __future__ import annotations

import json

import pytest

from shared.engines import prompts as p
from shared.engines.llm_answers import parse_json_answer, review_scores, score_value, shown, strip_reasoning
from shared.engines.llm_endpoint import Endpoint, default_concurrency, detect_mode, endpoint, mode_options
from shared.ports.engine import REVIEW_DIMENSIONS

pytestmark = pytest.mark.unit

DOCS = {"specification": "# S", "graph": "# G", "architecture": "# A"}
BODY = json.dumps(DOCS)


@pytest.mark.parametrize("text", [
    BODY,
    f"```json\n{BODY}\n```",
    f"Sure! Here it is:\n\n```json\n{BODY}\n```\n\nAnything else?",
    f"Here you go: {BODY} Hope that helps.",
    f"<think>\nMaybe {{\"draft\": 1}} first... no.\n</think>\n\n{BODY}",
    f"Reasoning about it {{\"x\": 1}}\n</think>\n```\n{BODY}\n```",  # template opened the block
    f"<THINKING>plan</THINKING>{BODY}",
])
def test_the_object_is_found_around_prose_fences_and_reasoning(text):
    assert parse_json_answer(text, p.AnalysisAnswer).model_dump() == DOCS


def test_an_object_that_does_not_fit_is_skipped_for_one_that_does():
    text = f'First a note: {{"note": "ignore me"}} and then the answer {BODY}'
    assert parse_json_answer(text, p.AnalysisAnswer).graph == "# G"


@pytest.mark.parametrize(("text", "problem"), [
    ("", "the answer was empty"),
    ("<think>I need to look at the files {\"a\": 1}</think>", "only reasoning"),
    ("no json here at all", "holds no JSON object"),
    ("<think>Let me draft it: {\"specification\": \"x\"} and then", "only reasoning"),  # cut off mid-thought
    ('{"specification": "x"}', "does not match the expected shape: improvements: Field required"),
])
def test_unusable_answers_say_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_json_answer(text, p.SuggestAnswer if "specification" in text and "<" not in text else p.AnalysisAnswer)


def test_a_check_failure_is_reported_when_no_candidate_passes():
    def check(answer):
        raise ValueError("nope, not that")

    with pytest.raises(ValueError, match="nope, not that"):
        parse_json_answer(BODY, p.AnalysisAnswer, check)


def test_suggest_answers_under_other_keys_are_read():
    answer = p.SuggestAnswer.model_validate({"suggestions": [{"title": "t", "description": "d", "change": "c"}]})
    assert answer.improvements[0].rationale == "d" and answer.improvements[0].changes == "c"


def test_strip_reasoning_and_shown_quote_the_answer_not_the_thinking():
    assert strip_reasoning("<think>a</think> b") == "b"
    assert shown("<think>long thought</think>Sorry, I cannot.") == "'Sorry, I cannot.'"
    assert shown("x" * 500).endswith("… (500 characters)")


@pytest.mark.parametrize(("raw", "value"), [
    (8, 8.0), ("8", 8.0), ("8/10", 8.0), ("4 / 5", 8.0), ("80%", 8.0), (85, 8.5), ({"score": 7}, 7.0),
    (0, None), ("great", None), (True, None), (None, None), (250, None),
])
def test_score_values(raw, value):
    assert score_value(raw) == value


def test_renamed_dimensions_are_mapped_and_unknown_ones_reported():
    raw = {"Correctness": 8, "Safety": 9, "code-quality": 7, "Clarity": 6, "Tests": 5, "Focus": 9, "vibes": 10}
    scores, unused = review_scores(raw, REVIEW_DIMENSIONS)
    assert scores == {"correctness": 8, "security": 9, "maintainability": 7, "readability": 6,
                      "test_coverage": 5, "scope": 9}
    assert unused == ["vibes"]
    assert review_scores({"security_score": "9", "secure": 7}, REVIEW_DIMENSIONS)[0] == {"security": 8}


def test_modes_fall_back_and_refusals_are_remembered():
    e = Endpoint("http://x/v1", preferred="tools")
    assert e.modes() == ["tools", "json_object", "plain"]
    e.refuse("tools")
    e.refuse("json_object")
    e.refuse("plain")  # plain prompting is never given up
    assert e.modes() == ["plain"]


def test_throttling_halves_the_limit_down_to_one():
    e = Endpoint("http://x/v1", limit=8)
    e.running = 8
    e.throttle()
    assert e.limit == 4
    e.throttle()
    e.throttle()
    e.throttle()
    assert e.limit == 1 and e.throttled == 4


def test_detection_and_defaults_by_url():
    assert detect_mode(None) == "json_schema" and detect_mode("http://localhost:11434/v1") == "json_schema"
    assert default_concurrency(None) == 8
    assert default_concurrency("http://127.0.0.1:8080/v1") == 2
    assert default_concurrency("http://192.168.1.5:8000/v1") == 2
    assert default_concurrency("https://models.example.com/v1") == 4
    assert endpoint("http://127.0.0.1:1/v1", mode="guided", concurrency=3).limit == 3
    with pytest.raises(ValueError, match="unknown structured-output mode 'grammar'"):
        endpoint("http://127.0.0.1:1/v1", mode="grammar")


def test_mode_options_carry_the_answer_schema():
    schema = p.AnalysisAnswer.model_json_schema()
    assert mode_options("json_schema", p.AnalysisAnswer)["response_format"]["json_schema"]["schema"] == schema
    tools = mode_options("tools", p.AnalysisAnswer)
    assert tools["tools"][0]["function"]["parameters"] == schema and tools["tool_choice"]["function"]["name"]
    assert mode_options("guided", p.AnalysisAnswer)["extra_body"]["guided_json"] == schema
    assert mode_options("ollama_format", p.AnalysisAnswer)["extra_body"]["format"] == schema
    assert mode_options("json_object", p.AnalysisAnswer) == {"response_format": {"type": "json_object", "schema": schema}}
    assert mode_options("plain", p.AnalysisAnswer) == {}


def _status_error(cls, status: int, message: str):
    try:
        import httpx2 as _httpx
    except ImportError:  # the upstream name, where that is what is installed
        import httpx as _httpx

    request = _httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    return cls(message, response=_httpx.Response(status, request=request), body=None)


def test_a_refused_option_is_told_from_a_failing_server():
    import openai

    from shared.engines.llm_client import refuses_option

    assert refuses_option(_status_error(openai.BadRequestError, 400, "response_format json_schema is not supported"))
    assert refuses_option(_status_error(openai.UnprocessableEntityError, 422, "tools: extra fields not permitted"))
    # llama-cpp-python's server validates the body and answers 500
    assert refuses_option(_status_error(openai.InternalServerError, 500,
                                        "Input should be 'text' or 'json_object' ('body', 'response_format', 'type')"))
    assert not refuses_option(_status_error(openai.InternalServerError, 500, "CUDA out of memory"))
    assert not refuses_option(_status_error(openai.BadRequestError, 400, "This model's maximum context length is 8192"))
    assert not refuses_option(_status_error(openai.RateLimitError, 429, "slow down"))
