"""Type name -> payload model, schema versions with upcasters, subjects derived from types."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class Payload(BaseModel):
    """Base of every event payload: frozen, unknown fields rejected."""

    # defer_build: a payload's validator is built the first time one is made or parsed, not at
    # import. Building all ~40 was a third of importing shared.events, paid by every process, and
    # a read command (`runs`, `status`) with current projections uses none of them.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    # Bumped when the payload changes shape; an upcaster lifts older data.
    schema_version: int = 1


class UnknownEventType(ValueError):
    def __init__(self, type_name: str):
        super().__init__(f"unknown event type {type_name!r}: not registered in shared.events")
        self.type_name = type_name


class MalformedEvent(ValueError):
    """A payload that does not validate; the message names the type and the fields."""

    def __init__(self, type_name: str, error: ValidationError | str):
        if isinstance(error, ValidationError):
            parts = []
            for e in error.errors():
                loc = ".".join(str(p) for p in e["loc"]) or "<root>"
                parts.append(f"field {loc!r}: {e['msg']}")
            detail = "; ".join(parts)
        else:
            detail = error
        super().__init__(f"malformed {type_name} event: {detail}")
        self.type_name = type_name
        self.detail = detail


P = TypeVar("P", bound=type[Payload])

_REGISTRY: dict[str, type[Payload]] = {}
_KIND: dict[str, str] = {}
# (type name, from version) -> function lifting data to from version + 1
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def event(kind: str = "run", version: int = 1) -> Callable[[P], P]:
    """Register a payload class under its class name (a stable, short type string)."""

    def register(cls: P) -> P:
        name = cls.__name__
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"event type {name} registered twice")
        _REGISTRY[name] = cls
        _KIND[name] = kind
        cls._current_version = version  # type: ignore[attr-defined]
        return cls

    return register


def upcaster(type_name: str, from_version: int):
    """Register a function that lifts `type_name` data from `from_version` to the next one."""

    def register(fn: Callable[[dict[str, Any]], dict[str, Any]]):
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return register


def payload_class(type_name: str) -> type[Payload]:
    try:
        return _REGISTRY[type_name]
    except KeyError:
        raise UnknownEventType(type_name) from None


def current_version(type_name: str) -> int:
    return getattr(payload_class(type_name), "_current_version", 1)


def registered_types() -> dict[str, type[Payload]]:
    return dict(_REGISTRY)


def stream_kind(type_name: str) -> str:
    payload_class(type_name)
    return _KIND[type_name]


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def subject_for(type_name: str, stream_id: str, prefix: str = "pilot") -> str:
    """`pilot.<stream kind>.<event name in snake case>`, e.g. `pilot.run.repo_analyzed`."""
    kind = stream_id.split("-", 1)[0] if "-" in stream_id else stream_kind(type_name)
    return f"{prefix}.{kind}.{snake(type_name)}"


def parse_payload(type_name: str, data: Any, schema_version: int | None = None) -> Payload:
    """Validate stored/received data into its payload model, upcasting older versions first."""
    cls = payload_class(type_name)
    if not isinstance(data, dict):
        raise MalformedEvent(type_name, f"data must be an object, got {type(data).__name__}")
    data = dict(data)
    version = schema_version or data.get("schema_version") or 1
    target = current_version(type_name)
    while version < target:
        lift = _UPCASTERS.get((type_name, version))
        if lift is None:
            raise MalformedEvent(type_name, f"no upcaster from schema version {version}")
        data = lift(data)
        version += 1
    data["schema_version"] = target
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise MalformedEvent(type_name, exc) from None


def parse_payload_json(type_name: str, raw: str, schema_version: int | None = None) -> Payload:
    """`parse_payload` from JSON text; current-version payloads skip the dict round trip."""
    cls = payload_class(type_name)
    if (schema_version or 1) == current_version(type_name):
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            raise MalformedEvent(type_name, exc) from None
    import json

    return parse_payload(type_name, json.loads(raw), schema_version)
