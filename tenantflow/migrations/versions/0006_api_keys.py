"""API keys with scopes (hashed), and which key created a tenant (for per-key caps).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False, unique=True),
        sa.Column("key_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("scope IN ('read', 'write', 'admin')", name="api_keys_scope_check"),
    )
    op.add_column("projects", sa.Column("created_by_key", UUID(as_uuid=True),
                                        sa.ForeignKey("api_keys.id"), nullable=True))
    op.create_index("ix_projects_created_by_key_live", "projects", ["created_by_key"],
                    postgresql_where=sa.text("status <> 'deleted'"))


def downgrade() -> None:
    op.drop_index("ix_projects_created_by_key_live", "projects")
    op.drop_column("projects", "created_by_key")
    op.drop_table("api_keys")
