"""A psycopg connection pool for the API's hottest read, the status read (``GET /v1/projects/{ref}``):
one statement, one value back, no ORM.

Why not the SQLAlchemy engine: for a read that is one statement and whose answer Postgres builds
itself, the engine's per-request work (its statement cache key, the greenlet bridge, the result
machinery) was about a fifth of the API's CPU on that route (py-spy, under load).

- Connections are opened as needed, up to ``size``, and kept (no connection per request; they go
  after ``max_idle``), in autocommit: a read is one statement, with no BEGIN/ROLLBACK round trips.
  psycopg prepares a statement on a connection after a few executions, so Postgres plans it once.
- Nothing is sent to test a connection before it is used (a pre-ping is one more round trip per
  request). Instead a read whose pooled connection turns out dead (Postgres restarted, the backend
  was terminated) is run once more on a connection of its own, and the pool checks its idle
  connections in the background, so a restart costs no request its answer. A read that waited
  ``CHECKOUT_WAIT_SECONDS`` for a pooled connection (the pool reconnecting after an outage, or far
  more requests than connections) goes the same way.
- Errors go through the mirror's one boundary (``tenantflow.store.translate_outage``): when the
  second try cannot connect either, the mirror is unreachable, ``MirrorUnavailable``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tenantflow.db import libpq_url
from tenantflow.store import translate_outage

# Autocommit: one statement per read. A connect that hangs (an unreachable host) gives up after this.
CONNECTION_OPTIONS: dict[str, Any] = {"autocommit": True, "connect_timeout": 5}
# How long a read waits for a pooled connection before it opens one of its own. Under the load the
# pool is sized for a wait is a few milliseconds; past this, the pool is not getting connections.
CHECKOUT_WAIT_SECONDS = 1.0
# The pool's own reconnection gives up after this and starts again on the next demand, so after an
# outage it does not sit out a backoff that doubled while the outage lasted.
RECONNECT_GIVE_UP_SECONDS = 2.0

_RETRY = object()  # the pooled try could not answer: run the read on a connection of its own


class ReadPool:
    """The mirror's connections for one-statement reads (open it in the API's lifespan)."""

    def __init__(self, url: str, *, size: int) -> None:
        self._conninfo = libpq_url(url)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self._conninfo, min_size=1, max_size=size, open=False, kwargs=CONNECTION_OPTIONS,
            timeout=CHECKOUT_WAIT_SECONDS, reconnect_timeout=RECONNECT_GIVE_UP_SECONDS, name="reads",
        )
        self._check: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start connecting in the background (the API starts even while the mirror is down)."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        if self._check is not None:
            self._check.cancel()
        await self._pool.close()

    async def fetch_value(self, query: str, params: Mapping[str, Any]) -> Any:
        """The first column of the first row of ``query`` (None when it returns no row).

        Raises:
            MirrorUnavailable: the mirror database cannot be reached.
        """
        with translate_outage():
            value = await self._pooled(query, params)
            if value is not _RETRY:
                return value
            async with await psycopg.AsyncConnection.connect(self._conninfo, **CONNECTION_OPTIONS) as conn:
                return await _fetch_value(conn, query, params)

    async def _pooled(self, query: str, params: Mapping[str, Any]) -> Any:
        try:
            conn = await self._pool.getconn()
        except PoolTimeout:
            return _RETRY
        try:
            return await _fetch_value(conn, query, params)
        except psycopg.Error:
            if not conn.broken:
                raise
            self._check_idle_connections()
            return _RETRY
        finally:
            await self._pool.putconn(conn)  # a broken one is dropped and replaced

    def _check_idle_connections(self) -> None:
        """The connection died: its idle siblings probably did too (a restart ends them all)."""
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._pool.check())


async def _fetch_value(conn: psycopg.AsyncConnection[Any], query: str, params: Mapping[str, Any]) -> Any:
    cursor = await conn.execute(query, params)
    row = await cursor.fetchone()
    return row[0] if row is not None else None
