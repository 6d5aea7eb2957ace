"""A request budget shared by every worker: a token bucket kept in one row of the mirror database.

Aura's API allows each account a number of requests per minute (125 on paid tiers, 25 on Free and
trials), polling included, whatever process sends them. Every Aura request first takes a token
here. The bucket holds at most ``limit × BURST`` tokens and refills so that in ANY window of that
length at most ``limit × SHARE`` requests go out (burst + refill), however many workers share it
and however they are timed. The rest of the limit is slack for the network: requests sent evenly
can arrive bunched (measured: with a 2 s window on a loaded machine, sending exactly the limit got
3 of 252 requests refused at the far end; with 10 % slack, none).

One statement takes a token (an upsert with the refill computed from the row's age, under the
row's lock, with the database's clock so workers' clocks do not matter). When the bucket is empty
the caller sleeps until the next token is due and tries again.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Of the limit: what may go out at once, and what may go out in any window in all.
BURST = 0.1
SHARE = 0.9

_LEVEL = ("LEAST(:capacity, rate_budgets.tokens"
          " + EXTRACT(EPOCH FROM clock_timestamp() - rate_budgets.updated_at) * :rate)")
_TAKE = text(f"""
    INSERT INTO rate_budgets (name, tokens, updated_at) VALUES (:name, :capacity - 1, clock_timestamp())
    ON CONFLICT (name) DO UPDATE SET tokens = {_LEVEL} - 1, updated_at = clock_timestamp()
    WHERE {_LEVEL} >= 1
    RETURNING tokens
""")
_LEVEL_NOW = text(f"SELECT {_LEVEL} FROM rate_budgets WHERE name = :name")


@dataclass(frozen=True)
class RateBudget:
    """At most ``limit`` acquisitions in any ``window_seconds``, across every process.

    Args:
        engine: The mirror database.
        name: The budget's row (one per account or API).
        limit: Requests allowed per window.
        window_seconds: The window's length.
        bursty: A plain token bucket instead: ``limit`` at once, then ``limit`` per window (for
            our own rate limits, where a burst up to the limit is fine; a window may then see up
            to twice the limit).
    """

    engine: AsyncEngine
    name: str
    limit: int
    window_seconds: float
    bursty: bool = False

    @property
    def capacity(self) -> float:
        if self.bursty:
            return float(self.limit)
        return max(1.0, math.floor(self.limit * BURST))

    @property
    def rate(self) -> float:
        """Tokens per second."""
        refill = self.limit if self.bursty else max(self.limit * SHARE - self.capacity, 1.0)
        return refill / self.window_seconds

    async def try_acquire(self) -> float | None:
        """Take one token if there is one (None); else how many seconds until the next is due."""
        params = {"name": self.name, "capacity": self.capacity, "rate": self.rate}
        async with self.engine.begin() as conn:
            if (await conn.execute(_TAKE, params)).first() is not None:
                return None
            level = (await conn.execute(_LEVEL_NOW, params)).scalar_one()
        return max((1 - float(level)) / self.rate, 0.001)

    async def acquire(self) -> float:
        """Take one token, waiting for it if need be; returns how long it waited (seconds)."""
        waited = 0.0
        while (pause := await self.try_acquire()) is not None:
            await asyncio.sleep(pause)
            waited += pause
        return waited
