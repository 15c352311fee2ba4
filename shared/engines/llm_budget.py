"""A run's model budget that holds under concurrent calls: reserve before, settle after.

Each call reserves its estimated size (the prompt, plus the answer's token cap, which is sent to
the server) before it starts; the check and the reservation happen with no `await` in between,
so concurrent calls in one event loop cannot all pass the check before any is counted. After the
answer the reservation is replaced by what the call really used. Usage a server does not report,
or reports as negative, is counted as the request's measured size, so a server cannot switch the
budget off. One ledger per run is shared by every engine of that run in the process.

A server may report more than a call reserved (a hostile or misconfigured endpoint can at will).
Each reply is reconciled as it arrives, before any other call is admitted; when what is spent plus
what calls in flight hold no longer fits the budget, the ledger is `overrun`: the calls in flight
are abandoned (charged what they reserved: the server may bill them) and no call is admitted
again. The run then overspends by at most the one reply's excess over its reservation.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from shared.ports.errors import StepError

CHARS_PER_TOKEN = 3  # errs towards more tokens than real tokenizers count for code and prose
MIN_ANSWER_TOKENS = 256  # less room than this for an answer is not worth a call
HINT = "raise REPO_PILOT_TOKEN_BUDGET / REPO_PILOT_COST_BUDGET or ask for fewer categories"


@dataclass(frozen=True)
class Budget:
    """What one run may spend; None means no limit."""

    max_tokens: int | None = None
    max_cost_usd: float | None = None


def estimate_tokens(value: object) -> int:
    """Tokens in a prompt (messages, schema) or an answer, estimated from its characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return -(-len(text) // CHARS_PER_TOKEN)


def counted(reported: int | None, measured: int) -> int:
    """What a call is charged: the server's figure when it gave a sane one, else our measure."""
    return reported if isinstance(reported, int) and reported > 0 else measured


@dataclass
class Reservation:
    prompt_tokens: int
    answer_tokens: int  # the cap sent with the request
    cost_usd: float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.answer_tokens


@dataclass
class Ledger:
    """Spent (settled) and reserved (in flight) against one run's budget."""

    budget: Budget = field(default_factory=Budget)
    tokens: int = 0
    cost_usd: float = 0.0
    reserved_tokens: int = 0
    reserved_cost_usd: float = 0.0
    _settled: asyncio.Event | None = field(default=None, repr=False)
    # Set once spent + held no longer fits: calls in flight are abandoned, none is admitted again.
    overrun: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def reserve_or_wait(
        self, purpose: str, prompt_tokens: int, answer_cap: int, prices: tuple[float, float]
    ) -> Reservation:
        """`reserve`, but while other calls hold reservations, wait for them to settle (they
        usually use less than they held) before giving up."""
        while True:
            try:
                return self.reserve(purpose, prompt_tokens, answer_cap, prices)
            except StepError:
                if self.overrun.is_set() or (not self.reserved_tokens and not self.reserved_cost_usd):
                    raise
            if self._settled is None:
                self._settled = asyncio.Event()
            await self._settled.wait()

    def catch_up(self, tokens: int, cost_usd: float) -> None:
        """What the store says the run spent so far (other steps, other processes)."""
        self.tokens = max(self.tokens, tokens)
        self.cost_usd = max(self.cost_usd, cost_usd)
        self._check_overrun()

    def reserve(
        self, purpose: str, prompt_tokens: int, answer_cap: int, prices: tuple[float, float]
    ) -> Reservation:
        """Room for a call of `prompt_tokens` and an answer of up to `answer_cap` tokens, shrunk
        to what is left; StepError when not even MIN_ANSWER_TOKENS fit."""
        if self.overrun.is_set():
            raise StepError(self.spent_message(purpose, prompt_tokens), hint=HINT)
        price_in, price_out = prices
        answer = answer_cap
        b = self.budget
        if b.max_tokens is not None:
            answer = min(answer, b.max_tokens - self.tokens - self.reserved_tokens - prompt_tokens)
        if b.max_cost_usd is not None and price_out > 0:
            left = b.max_cost_usd - self.cost_usd - self.reserved_cost_usd - prompt_tokens * price_in / 1e6
            answer = min(answer, int(left * 1e6 / price_out))
        elif b.max_cost_usd is not None and price_in > 0:
            if self.cost_usd + self.reserved_cost_usd + prompt_tokens * price_in / 1e6 > b.max_cost_usd:
                answer = 0
        if answer < min(MIN_ANSWER_TOKENS, answer_cap):
            raise StepError(self.spent_message(purpose, prompt_tokens), hint=HINT)
        reservation = Reservation(prompt_tokens, answer, (prompt_tokens * price_in + answer * price_out) / 1e6)
        self.reserved_tokens += reservation.tokens
        self.reserved_cost_usd += reservation.cost_usd
        return reservation

    def settle(self, reservation: Reservation, tokens: int, cost_usd: float) -> None:
        """Replace a reservation by what the call used (0 for a call that failed unanswered)."""
        self.reserved_tokens -= reservation.tokens
        self.reserved_cost_usd -= reservation.cost_usd
        self.tokens += max(0, tokens)
        self.cost_usd += max(0.0, cost_usd)
        if abs(self.reserved_cost_usd) < 1e-12:
            self.reserved_cost_usd = 0.0  # float residue must not keep waiters waiting
        self._check_overrun()
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    def _check_overrun(self) -> None:
        b = self.budget
        over_tokens = b.max_tokens is not None and self.tokens + self.reserved_tokens > b.max_tokens
        over_cost = b.max_cost_usd is not None and self.cost_usd + self.reserved_cost_usd > b.max_cost_usd + 1e-12
        if (over_tokens or over_cost) and not self.overrun.is_set():
            self.overrun.set()

    def fits(self, tokens: int, cost_usd: float) -> bool:
        b = self.budget
        return (b.max_tokens is None or self.tokens + self.reserved_tokens + tokens <= b.max_tokens) and (
            b.max_cost_usd is None or self.cost_usd + self.reserved_cost_usd + cost_usd <= b.max_cost_usd
        )

    def remaining_fraction(self) -> float:
        """How much of the tighter budget is left, 0..1 (1 when unlimited)."""
        left = [1.0]
        if self.budget.max_tokens:
            left.append(1 - (self.tokens + self.reserved_tokens) / self.budget.max_tokens)
        if self.budget.max_cost_usd:
            left.append(1 - (self.cost_usd + self.reserved_cost_usd) / self.budget.max_cost_usd)
        return max(0.0, min(left))

    def spent_message(self, purpose: str, prompt_tokens: int) -> str:
        b = self.budget
        tokens = "no token limit" if b.max_tokens is None else f"a limit of {b.max_tokens:,} tokens"
        cost = "no cost limit" if b.max_cost_usd is None else f"a limit of ${b.max_cost_usd:.2f}"
        in_flight = (
            f", {self.reserved_tokens:,} tokens held by calls in flight" if self.reserved_tokens else ""
        )
        return (
            f"model budget spent before {purpose}: the run has used {self.tokens:,} tokens and "
            f"${self.cost_usd:.4f}{in_flight}, against {tokens} and {cost}; the next call needs about "
            f"{prompt_tokens:,} tokens for its prompt plus room for an answer"
        )
