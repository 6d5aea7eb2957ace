"""Project events: every change of a step row or of a tenant's status, in order, for push updates.

- ``project_events``: append-only (id, project, kind, data, at); ``kind`` is ``step`` or ``status``;
  ``data`` is the changed row as the API shows it (no secret is ever on these rows).
- Triggers on ``provisioning_steps`` (insert; update of status, attempt, generation, error, times,
  retry count) and ``projects`` (insert; update of status) append the event and
  ``pg_notify('tenantflow_events', project_id)`` (delivered at commit), whichever code path wrote.
- Order: each trigger first takes a transaction-scoped advisory lock on the project, held to commit,
  so one project's events are committed in id order and a reader that resumes after id N (SSE's
  ``Last-Event-ID``) can never miss an event that commits later with a smaller id. No deadlock: the
  lock is taken at the end of a statement (row triggers fire then), and no store transaction locks
  another existing row of the project after its event-producing statement.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHANNEL = "tenantflow_events"  # tenantflow.catalog.EVENTS_CHANNEL when this was written

FUNCTIONS = f"""
CREATE FUNCTION tenantflow_lock_project_events(pid uuid) RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('project_events:' || pid::text, 0))
$$;

CREATE FUNCTION tenantflow_step_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tenantflow_lock_project_events(NEW.project_id);
    INSERT INTO project_events (project_id, kind, data) VALUES (NEW.project_id, 'step', jsonb_build_object(
        'project_id', NEW.project_id, 'step', NEW.step_name, 'run_kind', NEW.run_kind,
        'status', NEW.status, 'generation', NEW.generation, 'attempt', NEW.attempt,
        'retry_count', NEW.retry_count, 'started_at', NEW.started_at,
        'completed_at', NEW.completed_at, 'error_message', NEW.error_message,
        'at', clock_timestamp()));
    PERFORM pg_notify('{CHANNEL}', NEW.project_id::text);
    RETURN NULL;
END $$;

CREATE FUNCTION tenantflow_status_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tenantflow_lock_project_events(NEW.id);
    INSERT INTO project_events (project_id, kind, data) VALUES (NEW.id, 'status', jsonb_build_object(
        'project_id', NEW.id, 'status', NEW.status, 'at', clock_timestamp()));
    PERFORM pg_notify('{CHANNEL}', NEW.id::text);
    RETURN NULL;
END $$;
"""

STEP_CHANGED = " OR ".join(
    f"OLD.{c} IS DISTINCT FROM NEW.{c}"
    for c in ("status", "attempt", "generation", "error_message", "started_at", "completed_at",
              "retry_count")
)

TRIGGERS = f"""
CREATE TRIGGER step_inserted_event AFTER INSERT ON provisioning_steps
    FOR EACH ROW EXECUTE FUNCTION tenantflow_step_event();
CREATE TRIGGER step_changed_event AFTER UPDATE ON provisioning_steps
    FOR EACH ROW WHEN ({STEP_CHANGED}) EXECUTE FUNCTION tenantflow_step_event();
CREATE TRIGGER project_inserted_event AFTER INSERT ON projects
    FOR EACH ROW EXECUTE FUNCTION tenantflow_status_event();
CREATE TRIGGER project_status_event AFTER UPDATE OF status ON projects
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION tenantflow_status_event();
"""


def upgrade() -> None:
    op.create_table(
        "project_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("project_id", UUID(as_uuid=True),
                  sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("data", JSONB, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('step', 'status')", name="project_events_kind_check"),
    )
    op.create_index("ix_project_events_project_id_id", "project_events", ["project_id", "id"])
    for statement in (FUNCTIONS, TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    for table, trigger in (("provisioning_steps", "step_inserted_event"),
                           ("provisioning_steps", "step_changed_event"),
                           ("projects", "project_inserted_event"), ("projects", "project_status_event")):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for function in ("tenantflow_step_event()", "tenantflow_status_event()",
                     "tenantflow_lock_project_events(uuid)"):
        op.execute(f"DROP FUNCTION {function}")
    op.drop_table("project_events")
