"""Mirror tables: projects, provisioning_steps, credentials.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
        sa.Column("external_user_id", sa.Uuid(), nullable=True, unique=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("workflow_id", sa.String(255), nullable=False),
        sa.Column("tenant_db_name", sa.String(63)),
        sa.Column("tenant_db_role", sa.String(63)),
        sa.Column("schema_version", sa.Integer()),
        sa.Column("graph_backend", sa.String(20)),
        sa.Column("graph_mode", sa.String(40)),
        sa.Column("graph_database", sa.String(63)),
        sa.Column("graph_status", sa.String(20)),
        sa.Column("graph_uri", sa.Text()),
        sa.Column("graph_http_uri", sa.Text()),
        sa.Column("graph_username", sa.String(255)),
        sa.Column("graph_instance_id", sa.String(255)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('project', 'user')", name="projects_kind_check"),
        sa.CheckConstraint(
            "status IN ('pending', 'provisioning', 'online', 'failed')", name="projects_status_check"
        ),
    )
    op.create_index("ix_projects_created_at", "projects", ["created_at", "id"])
    op.create_table(
        "provisioning_steps",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "project_id", sa.Uuid(), sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("step_name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", TS),
        sa.Column("completed_at", TS),
        sa.Column("error_message", sa.Text()),
        sa.Column("error_details", postgresql.JSONB()),
        sa.Column("retry_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "step_name"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'success', 'failed', 'skipped')",
            name="provisioning_steps_status_check",
        ),
    )
    op.create_index("ix_provisioning_steps_project_id", "provisioning_steps", ["project_id"])
    op.create_table(
        "credentials",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "project_id", sa.Uuid(), sa.ForeignKey("projects.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint("project_id", "kind"),
    )
    op.create_index("ix_credentials_project_id", "credentials", ["project_id"])


def downgrade() -> None:
    op.drop_table("credentials")
    op.drop_table("provisioning_steps")
    op.drop_table("projects")
