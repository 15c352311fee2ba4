"""How much a finding weighs (pure): the one home of "is this a security finding" and its severity.

ruff's flake8-bandit rules and bandit's own ids share numbers (ruff S602 is bandit B602). Severity
follows bandit's: high for injection and code execution, low for "this call exists, check its input"
(S603, S607, S404…), which a hardening fix may legitimately introduce (`shell=False` is S603).
"""

from __future__ import annotations

SECURITY_PREFIXES = ("S", "bandit:", "secret:")
BUG_RISK_PREFIXES = ("B",)

HIGH = frozenset({
    "S102", "S103", "S104", "S105", "S106", "S107", "S301", "S302", "S307", "S323", "S324", "S501", "S502",
    "S503", "S504", "S506", "S507", "S508", "S509", "S602", "S604", "S605", "S608", "S609", "S701", "S702",
})  # fmt: skip
LOW = frozenset({"S101", "S110", "S112", "S311", "S401", "S403", "S404", "S603", "S607"})
WEIGHTS = {"high": 3.0, "medium": 2.0, "low": 0.5, "style": 0.25}


def _bare(code: str) -> str:
    """`bandit:B602` -> `S602` (same rule), `S602` -> `S602`."""
    if code.startswith("bandit:B"):
        return "S" + code.removeprefix("bandit:B")
    return code


def is_security(code: str) -> bool:
    return code.startswith(SECURITY_PREFIXES) and not code.startswith("SIM")


def severity(code: str) -> str:
    """`high`, `medium` or `low` for security findings; `medium` for bug risks (bugbear) and syntax
    errors; `style` for the rest (lint, modernisation)."""
    if code.startswith("secret:"):
        return "high"
    if is_security(code):
        bare = _bare(code)
        return "high" if bare in HIGH else "low" if bare in LOW else "medium"
    if code.startswith(BUG_RISK_PREFIXES) or code.startswith("E9") or code in ("E999", "F821", "F811"):
        return "medium"
    return "style"


def weighted(counts: dict[str, int]) -> float:
    """The findings' total weight (`counts`: code -> number of findings)."""
    return sum(WEIGHTS[severity(code)] * n for code, n in counts.items())


def by_severity(counts: dict[str, int]) -> dict[str, int]:
    out = {"high": 0, "medium": 0, "low": 0, "style": 0}
    for code, n in counts.items():
        out[severity(code)] += n
    return out
