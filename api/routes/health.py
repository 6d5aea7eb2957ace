"""``GET /healthz``: is the API able to serve (mirror database and Temporal reachable)?"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from api.deps import StoreDep, TemporalDep
from api.schemas import Health

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 3.0


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The mirror database or Temporal is unreachable."}},
)
async def healthz(store: StoreDep, temporal: TemporalDep, response: Response) -> Health:
    """Check the mirror database (``SELECT 1``) and Temporal (gRPC health check). No auth."""

    async def database() -> None:
        async with store.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def temporal_server() -> None:
        await temporal.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS))

    db_state, temporal_state = await asyncio.gather(_probe("database", database()),
                                                    _probe("temporal", temporal_server()))
    healthy = db_state == temporal_state == "ok"
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="ok" if healthy else "unavailable", database=db_state, temporal=temporal_state)


async def _probe(name: str, check: Coroutine[Any, Any, Any]) -> str:
    """``"ok"`` or ``"unreachable"``; a health check reports failures instead of raising them."""
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        # Only the type: driver messages can contain connection details.
        log.warning("health check of %s failed: %s", name, type(exc).__name__)
        return "unreachable"
    return "ok"
