"""Keeping credentials out of messages, events, logs, spans and model prompts: one redactor.

`redact(text)` masks, in this order:

1. credentials in URLs (`https://user:token@host`, DSNs) -> `scheme://***@host`, and values
   assigned to names that say secret (`AWS_SECRET_ACCESS_KEY=…`, `api_key: …`);
2. the values of this process's own secret settings (API keys, tokens, database and bus
   passwords), registered once by `register_secrets` when settings are read;
3. whatever `detect-secrets` (Yelp's scanner, its regex plugins: AWS, GitHub, OpenAI-style,
   Slack, Stripe, private keys, JWTs, `password = "…"` keywords)
   finds on a line.

A secret is replaced by `***` (URL userinfo) or `[REDACTED]`. Text is scanned line by line;
lines over 4,000 characters are scanned only for the first two kinds (the scanner's regexes are
not meant for minified blobs).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterable

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
MASK = "[REDACTED]"
_MIN_SECRET = 6  # shorter values would mask ordinary words
_LONG_LINE = 4000
_known: set[str] = set()
_SCAN_LOCK = threading.Lock()

# Line-by-line (ad hoc) scanning reports every word as a high-entropy candidate: the regex and
# keyword plugins only.
_PLUGINS_OFF = {"HexHighEntropyString", "Base64HighEntropyString"}


def register_secrets(values: Iterable[str | None]) -> None:
    """Remember secret values so `redact` masks them; of a URL, only its password."""
    for value in values:
        if not value:
            continue
        value = str(value)
        if "://" in value:  # a URL is not secret; its password is
            match = re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:([^/@\s]+)@", value)
            value = match.group(1) if match else ""
        if len(value) >= _MIN_SECRET:
            _known.add(value)
    _known_pattern.cache_clear()


@functools.cache
def _known_pattern() -> re.Pattern | None:
    if not _known:
        return None
    return re.compile("|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True)))


@functools.cache
def _scanner():
    """detect-secrets' line scanner with its default plugins (minus the noisy ones), or None."""
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import transient_settings
    except ImportError:  # pragma: no cover - a declared dependency; degrade rather than crash
        logging.getLogger(__name__).warning("detect-secrets is not installed: only known secrets are redacted")
        return None
    by_type = get_mapping_from_secret_type_to_class()
    plugins = [{"name": cls.__name__} for cls in by_type.values() if cls.__name__ not in _PLUGINS_OFF]
    config = {"plugins_used": plugins, "filters_used": []}
    return scan_line, transient_settings, config, by_type


def _whole_tokens(detector, prefix: str, line: str) -> set[str]:
    """The tokens a regex detector matched that start with what it reported: some capture only the
    token's prefix (GitHub's `(ghp|gho|…)_[A-Za-z0-9_]{36}` reports `ghp`, GitLab's `glpat`), and
    masking that alone would leave the token in place."""
    patterns = getattr(detector, "denylist", None) if detector is not None else None
    return {m.group(0) for pattern in patterns or () for m in pattern.finditer(line)
            if m.group(0).startswith(prefix) and len(m.group(0)) > len(prefix)}


# NAME=value where the name says secret (environment dumps, .env files, `export`): the value.
_ASSIGNED = re.compile(
    r"(?i)(\b[A-Z0-9_.-]*(?:SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)[A-Z0-9_]*"
    r"\s*[=:]\s*)(['\"]?)([^\s'\"\x00]{4,})")


def _unroutable_ip(kind: str, value: str) -> bool:
    """An "IP" finding that is no public address (0.0.0.0, a private one): a listen address such
    as uvicorn's `running on http://0.0.0.0:8080` is not a secret."""
    import ipaddress

    if not kind.startswith("Public IP"):
        return False
    host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_global
    except ValueError:
        return False


def _scan(text: str) -> str:
    scanner = _scanner()
    if scanner is None:
        return text
    scan_line, transient_settings, config, by_type = scanner
    out = []
    # detect-secrets keeps its settings in module globals: one scan at a time across threads.
    with _SCAN_LOCK, transient_settings(config):
        for line in text.splitlines(keepends=True):
            if len(line) <= _LONG_LINE and line.strip():
                found: set[str] = set()
                for s in scan_line(line):
                    if not s.secret_value or _unroutable_ip(s.type, s.secret_value):
                        continue
                    cls = by_type.get(s.type)
                    found |= _whole_tokens(cls() if cls else None, s.secret_value, line) or {s.secret_value}
                for secret in sorted(found, key=len, reverse=True):
                    if len(secret) >= 4:
                        line = line.replace(secret, MASK)
            out.append(line)
    return "".join(out)


def redact(text: str) -> str:
    """`text` with credentials masked (see the module docstring)."""
    if not text:
        return text
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    known = _known_pattern()
    if known is not None:
        text = known.sub(MASK, text)
    text = _ASSIGNED.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    return _scan(text)


def redact_known(text: str) -> str:
    """The cheap part of `redact` (URL credentials and registered values), for bulk text."""
    if not text:
        return text
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    known = _known_pattern()
    return known.sub(MASK, text) if known is not None else text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's message (attach it to handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
