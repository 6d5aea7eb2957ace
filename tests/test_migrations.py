"""The Alembic migrations create exactly the tables the SQLModel models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

import tenantflow.models  # noqa: F401
from tenantflow import db


def test_migrated_schema_matches_the_models(mirror_url: str) -> None:
    engine = create_engine(db.async_url(mirror_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
            # Indexes and check constraints exist only in the migration (the models stay readable).
            tables = [d for d in diff if d[0] in ("add_table", "remove_table", "add_column",
                                                  "remove_column")]
            assert tables == []
            columns = {c["name"] for c in inspect(conn).get_columns("provisioning_steps")}
    finally:
        engine.dispose()
    assert columns == {"id", "project_id", "step_name", "status", "started_at", "completed_at",
                       "error_message", "error_details", "retry_count", "created_at"}


def test_upgrade_is_idempotent(mirror_url: str) -> None:
    db.upgrade(mirror_url)  # already at head: nothing to do, no error
