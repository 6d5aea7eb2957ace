"""Step rows: ``result`` apart from errors, a write fence, the attempts history; project status fence.

- ``provisioning_steps.result``: a step's output. Rows written before this revision kept a success's
  output in ``error_details -> 'result'`` and a skip's reason in ``error_details -> 'skipped'``: both
  move to ``result`` (the reason as ``{"skip_reason": ...}``) and ``error_details`` becomes NULL there.
- ``generation``, ``attempt``, ``phase``: the fence of the row's last write (see the model). Existing
  rows get the attempt their ``retry_count`` implies and the phase their status implies.
- ``provisioning_step_attempts``: one row per attempt; the history starts with this revision (the
  attempts before it were never recorded one by one).
- ``projects.status_seq``: fence of the workflow's project-status writes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("provisioning_steps", sa.Column("result", postgresql.JSONB()))
    fence = (("generation", sa.Integer()), ("attempt", sa.Integer()), ("phase", sa.SmallInteger()))
    for column, kind in fence:
        op.add_column("provisioning_steps", sa.Column(column, kind, nullable=False, server_default="0"))
    op.add_column("projects", sa.Column("status_seq", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        """
        UPDATE provisioning_steps
           SET result = error_details -> 'result', error_details = NULL
         WHERE status = 'success'
        """
    )
    op.execute(
        """
        UPDATE provisioning_steps
           SET result = CASE WHEN error_details ? 'skipped'
                             THEN jsonb_build_object('skip_reason', error_details -> 'skipped') END,
               error_details = NULL
         WHERE status = 'skipped'
        """
    )
    op.execute(
        """
        UPDATE provisioning_steps
           SET attempt = CASE WHEN started_at IS NULL THEN 0 ELSE retry_count + 1 END,
               phase = CASE status WHEN 'pending' THEN 0 WHEN 'running' THEN 1 WHEN 'failed' THEN 3 ELSE 2 END
        """
    )
    op.create_table(
        "provisioning_step_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "project_id", sa.Uuid(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("step_name", sa.String(100), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("outcome", sa.String(20)),
        sa.Column("error_message", sa.Text()),
        sa.Column("error_details", postgresql.JSONB()),
        sa.UniqueConstraint("project_id", "step_name", "generation", "attempt"),
        sa.CheckConstraint(
            "outcome IN ('success', 'skipped', 'failed', 'lost')",
            name="provisioning_step_attempts_outcome_check",
        ),
    )
    op.create_index(
        "ix_provisioning_step_attempts_project_id", "provisioning_step_attempts", ["project_id"]
    )


def downgrade() -> None:
    op.drop_table("provisioning_step_attempts")
    op.execute(
        """
        UPDATE provisioning_steps
           SET error_details = CASE status
                   WHEN 'success' THEN jsonb_build_object('result', result)
                   WHEN 'skipped' THEN jsonb_build_object('skipped', result -> 'skip_reason')
                   ELSE error_details END
         WHERE result IS NOT NULL
        """
    )
    op.drop_column("projects", "status_seq")
    for column in ("phase", "attempt", "generation", "result"):
        op.drop_column("provisioning_steps", column)
