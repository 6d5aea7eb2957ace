"""Alembic environment for the mirror tables (sync psycopg 3 connection)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import tenantflow.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = config.attributes["database_url"]
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            # Serialise concurrent upgrades (API and worker start together).
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7310001)")
            context.run_migrations()
    engine.dispose()


run_migrations_online()
