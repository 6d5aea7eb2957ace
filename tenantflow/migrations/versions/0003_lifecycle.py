"""Tenant lifecycle: deprovisioning and deleted tenants, run kinds on step rows, connection-read audit.

- ``projects.status`` may be ``deprovisioning`` and ``deleted``; ``deleted_at`` says when.
- A deleted tenant's row stays for audit but frees its name, idempotency key and user id: the three
  unique constraints become unique indexes over the rows that are not ``deleted``.
- ``provisioning_steps.run_kind``: ``provision`` or ``deprovision`` (existing rows: ``provision``).
- ``connection_reads``: who read a tenant's connection details, when (never what).
- Indexes for listing and filtering: by status, by name prefix, by failed step.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
LIVE = sa.text("status <> 'deleted'")
UNIQUE_WHILE_LIVE = ("name", "idempotency_key", "external_user_id")


def upgrade() -> None:
    op.drop_constraint("projects_status_check", "projects", type_="check")
    op.create_check_constraint(
        "projects_status_check", "projects",
        "status IN ('pending', 'provisioning', 'online', 'failed', 'deprovisioning', 'deleted')",
    )
    op.add_column("projects", sa.Column("deleted_at", TS))
    for column in UNIQUE_WHILE_LIVE:
        op.drop_constraint(f"projects_{column}_key", "projects", type_="unique")
        op.create_index(f"ux_projects_live_{column}", "projects", [column], unique=True,
                        postgresql_where=LIVE)
    op.create_index("ix_projects_status_created_at", "projects", ["status", "created_at", "id"])
    op.create_index("ix_projects_name_prefix", "projects", ["name"],
                    postgresql_ops={"name": "text_pattern_ops"})

    op.add_column("provisioning_steps", sa.Column(
        "run_kind", sa.String(20), nullable=False, server_default="provision"))
    op.create_check_constraint("provisioning_steps_run_kind_check", "provisioning_steps",
                               "run_kind IN ('provision', 'deprovision')")
    op.create_index("ix_provisioning_steps_failed", "provisioning_steps", ["step_name", "project_id"],
                    postgresql_where=sa.text("status = 'failed'"))

    op.create_table(
        "connection_reads",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("project_id", sa.Uuid(), sa.ForeignKey("projects.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("client", sa.String(255)),
        sa.Column("read_at", TS, nullable=False),
    )
    op.create_index("ix_connection_reads_project_id", "connection_reads", ["project_id", "read_at"])


def downgrade() -> None:
    op.drop_table("connection_reads")
    op.drop_index("ix_provisioning_steps_failed", "provisioning_steps")
    op.drop_constraint("provisioning_steps_run_kind_check", "provisioning_steps", type_="check")
    op.drop_column("provisioning_steps", "run_kind")
    op.drop_index("ix_projects_name_prefix", "projects")
    op.drop_index("ix_projects_status_created_at", "projects")
    op.execute("DELETE FROM projects WHERE status = 'deleted'")
    for column in UNIQUE_WHILE_LIVE:
        op.drop_index(f"ux_projects_live_{column}", "projects")
        op.create_unique_constraint(f"projects_{column}_key", "projects", [column])
    op.drop_column("projects", "deleted_at")
    op.drop_constraint("projects_status_check", "projects", type_="check")
    op.create_check_constraint(
        "projects_status_check", "projects", "status IN ('pending', 'provisioning', 'online', 'failed')"
    )
