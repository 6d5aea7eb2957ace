"""Engines for the mirror database and its Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def async_url(url: str) -> str:
    """Normalise ``postgresql://`` URLs to the psycopg 3 driver SQLAlchemy needs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("the mirror database URL must be a postgresql:// URL")


def make_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An async engine on psycopg 3 for the mirror tables."""
    return create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True
    )


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
