"""Engines for the mirror database and its Alembic migrations."""

from __future__ import annotations

import select
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import pq
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Normalise ``postgresql://`` URLs to the psycopg 3 driver SQLAlchemy needs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("the mirror database URL must be a postgresql:// URL")


def make_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An async engine on psycopg 3 for the mirror tables.

    ``pool_size`` connections stay open: size it to the concurrency the engine serves (the API's
    ``api_db_connections``), because each connection beyond it (up to ``2 * pool_size`` more) is
    opened for one checkout and closed after it, a Postgres backend forked per request.

    No pre-ping (a ``SELECT 1`` round trip on every checkout): a checkout instead looks, without a
    round trip, whether the server has closed the connection (``server_closed``), as it does to
    every connection when it restarts; then the pool drops it and every connection opened before
    it, and opens a new one. A connection lost in the instant between that look and its use fails
    its statement (an outage, ``MirrorUnavailable``) and is dropped the same way.
    """
    engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=pool_size * 2)
    event.listen(engine.sync_engine, "checkout", _drop_if_closed)
    return engine


def _drop_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if server_closed(dbapi_connection.driver_connection):
        # The pool's documented way to replace a connection at checkout (tried up to three times).
        raise sa_exc.InvalidatePoolError("the mirror database closed the connection (restarted?)")


def server_closed(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server has closed this idle connection, seen without a round trip: Postgres
    says goodbye (an error message, then end of stream) to every connection it terminates or
    shuts down, so the socket turns readable. An idle connection of ours has nothing else to read
    (none LISTENs), so anything there counts: at worst a notice costs a reconnect."""
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK:
        return True
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except (psycopg.Error, OSError):
        return True


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = async_url(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the mirror's migrations (sync; run at start-up of the dev stack and in tests)."""
    command.upgrade(alembic_config(url), revision)


def libpq_url(url: str) -> str:
    """The same URL for psycopg itself (``postgresql://``), e.g. for a LISTEN connection."""
    return "postgresql://" + async_url(url)[len("postgresql+psycopg://"):]
