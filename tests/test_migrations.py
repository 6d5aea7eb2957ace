"""The Alembic migrations create exactly the tables the SQLModel models describe."""

from __future__ import annotations

import json
import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import tenantflow.models  # noqa: F401
from devstack.postgres import PostgresServer
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
    seed = {"id", "project_id", "step_name", "status", "started_at", "completed_at",
            "error_message", "error_details", "retry_count", "created_at"}
    assert columns == seed | {"result", "generation", "attempt", "phase", "run_kind"}


def test_rows_written_before_0002_move_results_out_of_error_details(pg: PostgresServer) -> None:
    """A success's output and a skip's reason, stored in error_details by 0001-era code, move to
    ``result``; errors stay where they were."""
    name = "mig_" + uuid.uuid4().hex[:8]
    pg.create_database(name)
    url = pg.url(name)
    db.upgrade(url, "0001")
    engine = create_engine(db.async_url(url))
    pid = uuid.uuid4()
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO projects (id, name, kind, status, workflow_id, created_at, updated_at) "
                "VALUES (:id, 'old', 'project', 'failed', 'wf', now(), now())"), {"id": pid})
            for step, status, details, retries in (
                ("create_tenant_database", "success", {"result": {"database": "t_old"}}, 0),
                ("create_graph_database", "skipped", {"skipped": "graph_backend is 'none'"}, 0),
                ("create_tenant_schema", "failed", {"type": "DatabaseRejected", "sqlstate": "42501"}, 2),
            ):
                conn.execute(text(
                    "INSERT INTO provisioning_steps (id, project_id, step_name, status, started_at, "
                    "error_details, retry_count, created_at) VALUES (:id, :pid, :step, :status, now(), "
                    "CAST(:details AS jsonb), :retries, now())"),
                    {"id": uuid.uuid4(), "pid": pid, "step": step, "status": status,
                     "details": json.dumps(details), "retries": retries})
        db.upgrade(url)
        with engine.connect() as conn:
            rows = {r.step_name: r for r in conn.execute(text(
                "SELECT step_name, result, error_details, attempt, phase FROM provisioning_steps"))}
    finally:
        engine.dispose()
    assert rows["create_tenant_database"].result == {"database": "t_old"}
    assert rows["create_tenant_database"].error_details is None
    assert rows["create_graph_database"].result == {"skip_reason": "graph_backend is 'none'"}
    assert rows["create_graph_database"].error_details is None
    failed = rows["create_tenant_schema"]
    assert failed.result is None and failed.error_details == {"type": "DatabaseRejected", "sqlstate": "42501"}
    assert (failed.attempt, failed.phase) == (3, 3)  # its third attempt; the workflow's final mark


def test_upgrade_is_idempotent(mirror_url: str) -> None:
    db.upgrade(mirror_url)  # already at head: nothing to do, no error
