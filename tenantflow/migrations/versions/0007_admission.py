"""Admission: when each tenant's provisioning run was let in (started), so a cap on runs in flight
can hold a burst back and let it in oldest first (``tenantflow.admission``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True))
    # Every existing tenant had its run started when it was created.
    op.execute("UPDATE projects SET admitted_at = created_at")


def downgrade() -> None:
    op.drop_column("projects", "admitted_at")
