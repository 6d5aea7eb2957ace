"""The loop every worker-side pass runs in (the reconciler, admission): pass after pass until
stopped, an outage of Temporal or the mirror waited out rather than ending the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def every(interval: float, stop: asyncio.Event, run_once: Callable[[], Awaitable[Any]], *,
                what: str) -> None:
    """Await ``run_once()`` every ``interval`` seconds until ``stop`` is set; a failed pass is
    logged (``what`` names it) and the next one tried."""
    while not stop.is_set():
        try:
            await run_once()
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any outage
            log.warning("%s pass failed (%s); trying again", what, type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
