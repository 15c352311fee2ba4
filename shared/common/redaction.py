"""Keeping credentials out of messages, events, logs and spans."""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """`text` with any credentials in a URL (`https://user:token@host`, DSNs) replaced by `***`."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
