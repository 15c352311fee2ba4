"""Reading a model's answer tolerantly: the JSON object inside whatever the server sent back.

Servers and models wrap answers differently: a bare object (strict JSON modes), a fenced block
with a sentence before and after (servers that ignore `response_format`), `<think>…</think>`
reasoning first (reasoning models on Ollama and llama.cpp), arguments of a tool call (tool-call
mode). vLLM puts reasoning in a separate `reasoning_content` field, which is never read.

`parse_json_answer` tries every JSON object it can find, in order, and returns the first one that
validates; only when none does is the answer refused, with a message meant for the model.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.engines.prompts import ReviewAnswer
from shared.ports.engine import REVIEW_DIMENSIONS, ModelReview

T = TypeVar("T", bound=BaseModel)

_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(think|thinking|reasoning)>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*[ \t]*\n(.*?)\n?```", re.DOTALL)
SHOWN_CHARS = 300  # how much of an unusable answer a failure message quotes


def strip_reasoning(text: str) -> str:
    """The text without reasoning blocks. A lone closing tag (templates that open the block in the
    prompt) ends the reasoning too; an unclosed opening tag means the answer never came."""
    text = _THINK.sub("", text)
    closing = list(_THINK_CLOSE.finditer(text))
    if closing:
        text = text[closing[-1].end():]
    unclosed = _THINK_OPEN.search(text)  # cut off mid-thought: nothing after it is an answer
    if unclosed:
        text = text[: unclosed.start()]
    return text.strip()


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object in `text`: the whole text, then fenced blocks, then each `{…}` that
    decodes, outermost first, in order of appearance."""
    body = strip_reasoning(text)
    try:
        whole = json.loads(body)
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, dict):
        yield whole
    for fence in _FENCE.finditer(body):
        try:
            found = json.loads(fence.group(1))
        except json.JSONDecodeError:
            continue
        if isinstance(found, dict):
            yield found
    decoder = json.JSONDecoder()
    position = body.find("{")
    while position != -1:
        try:
            found, end = decoder.raw_decode(body, position)
        except json.JSONDecodeError:
            position = body.find("{", position + 1)
            continue
        if isinstance(found, dict):
            yield found
        position = body.find("{", end)


def shown(text: str | None) -> str:
    """An answer quoted in a message: reasoning removed, cut to SHOWN_CHARS."""
    body = strip_reasoning(text or "") or (text or "").strip()
    if not body:
        return "(an empty answer)"
    return repr(body[:SHOWN_CHARS]) + (f" … ({len(body)} characters)" if len(body) > SHOWN_CHARS else "")


def parse_json_answer(text: str | None, schema: type[T], check: Callable[[T], T] | None = None) -> T:
    """The first JSON object in the answer that validates as `schema` and passes `check` (which
    may raise ValueError); raises ValueError with a message meant for the model."""
    if not text or not text.strip():
        raise ValueError("the answer was empty; reply with one JSON object")
    if not strip_reasoning(text):
        raise ValueError("the answer held only reasoning and no JSON object; reply with the JSON object")
    problem = ""
    for data in json_objects(text):
        try:
            value = schema.model_validate(data)
        except ValidationError as exc:
            problem = problem or "the JSON does not match the expected shape: " + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:8]
            )
            continue
        try:
            return check(value) if check else value
        except ValueError as exc:
            problem = problem or str(exc)
    raise ValueError(problem or "the answer holds no JSON object; reply with one JSON object")


# -- review scores under other names ---------------------------------------------------------

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "correctness": ("correct", "functionality", "functional", "bugs", "accuracy", "logic", "behaviour",
                    "behavior"),
    "security": ("safety", "secure", "vulnerabilities"),
    "maintainability": ("maintenance", "quality", "code_quality", "design", "architecture", "structure"),
    "readability": ("clarity", "style", "readable", "documentation", "docs", "naming"),
    "test_coverage": ("tests", "testing", "coverage", "testability", "test"),
    "scope": ("focus", "size", "minimality", "change_size", "minimal", "focused"),
}
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def dimension_for(name: str, dimensions: tuple[str, ...]) -> str | None:
    """The dimension a score's name stands for: exact, a known synonym, or a name containing it."""
    key = _key(name)
    for d in dimensions:
        if key == d or key in _SYNONYMS.get(d, ()):
            return d
    for d in dimensions:
        if d in key or any(s in key.split("_") for s in _SYNONYMS.get(d, ())):
            return d
    return None


def score_value(raw: object) -> float | None:
    """A 1–10 score from 8, "8", "8/10", "85%" or {"score": 8}; None when it is not one."""
    if isinstance(raw, dict):
        raw = next((raw[k] for k in ("score", "value", "rating") if k in raw), None)
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = str(raw)
        found = _NUMBER.search(text)
        if not found:
            return None
        value = float(found.group())
        out_of = re.search(r"/\s*(\d+(?:\.\d+)?)", text)
        if out_of and float(out_of.group(1)) > 0:
            value = value * 10 / float(out_of.group(1))
        elif "%" in text:
            value /= 10
    if 10 < value <= 100:
        value /= 10
    return value if 1.0 <= value <= 10.0 else None


def review_scores(raw: dict[str, object], dimensions: tuple[str, ...]) -> tuple[dict[str, float], list[str]]:
    """(scores by dimension, names that could not be used). Two names for one dimension average."""
    found: dict[str, list[float]] = {}
    unused: list[str] = []
    for name, value in raw.items():
        dimension, score = dimension_for(name, dimensions), score_value(value)
        if dimension is None or score is None:
            unused.append(name)
        else:
            found.setdefault(dimension, []).append(score)
    return {d: round(sum(v) / len(v), 2) for d, v in found.items()}, unused


def combine_review_samples(samples: list[ReviewAnswer]) -> ModelReview:
    """Median of the samples, per dimension over the samples that scored it. A dimension no sample
    scored is left out (the reviewer's signals stand in for it) and named in the summary; a sample
    without an overall score gets the mean of its dimension scores."""
    read = [review_scores(s.scores, REVIEW_DIMENSIONS)[0] for s in samples]
    overall = [
        s.overall if s.overall is not None else round(statistics.fmean(scores.values()), 1)
        for s, scores in zip(samples, read, strict=True)
    ]
    middle = statistics.median(overall)
    closest = min(zip(samples, overall, strict=True), key=lambda pair: abs(pair[1] - middle))[0]
    scores = {
        d: float(statistics.median(r[d] for r in read if d in r))
        for d in REVIEW_DIMENSIONS
        if any(d in r for r in read)
    }
    missing = [d for d in REVIEW_DIMENSIONS if d not in scores]
    summary = closest.summary
    if missing:
        summary = f"{summary} (not scored by the model: {', '.join(missing)})".strip()
    return ModelReview(
        overall=min(10.0, max(1.0, middle)),
        scores=scores,
        issues=list(dict.fromkeys(i for s in samples for i in s.issues)),
        summary=summary,
        samples=overall,
    )
