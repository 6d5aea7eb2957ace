"""The mirror's tables. Alembic migrations (``tenantflow/migrations``) create them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from tenantflow.catalog import ProjectKind, ProjectStatus, StepStatus

# The enums live in tenantflow.catalog; re-exported for the modules that read rows.
__all__ = ["Credential", "Project", "ProjectKind", "ProjectStatus", "ProvisioningStep", "StepStatus"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kw))


class Project(SQLModel, table=True):
    """A tenant: a project, or a user with a per-user graph database."""

    __tablename__ = "projects"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(sa_column=Column(String(63), nullable=False, unique=True))
    kind: str = Field(default=ProjectKind.PROJECT, sa_column=Column(String(20), nullable=False))
    idempotency_key: str | None = Field(
        default=None, sa_column=Column(String(255), unique=True, nullable=True)
    )
    external_user_id: uuid.UUID | None = Field(default=None, unique=True, nullable=True)
    status: str = Field(default=ProjectStatus.PENDING, sa_column=Column(String(20), nullable=False))
    workflow_id: str = Field(sa_column=Column(String(255), nullable=False))
    # Tenant Postgres
    tenant_db_name: str | None = Field(default=None, sa_column=Column(String(63)))
    tenant_db_role: str | None = Field(default=None, sa_column=Column(String(63)))
    schema_version: int | None = Field(default=None, sa_column=Column(Integer))
    # Graph database: what deletion and the client factory need (never a password)
    graph_backend: str | None = Field(default=None, sa_column=Column(String(20)))
    graph_mode: str | None = Field(default=None, sa_column=Column(String(40)))
    graph_database: str | None = Field(default=None, sa_column=Column(String(63)))
    graph_status: str | None = Field(default=None, sa_column=Column(String(20)))
    graph_uri: str | None = Field(default=None, sa_column=Column(Text))
    graph_http_uri: str | None = Field(default=None, sa_column=Column(Text))
    graph_username: str | None = Field(default=None, sa_column=Column(String(255)))
    graph_instance_id: str | None = Field(default=None, sa_column=Column(String(255)))
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class ProvisioningStep(SQLModel, table=True):
    """One step of one tenant's provisioning, as the activities last reported it."""

    __tablename__ = "provisioning_steps"
    __table_args__ = (UniqueConstraint("project_id", "step_name"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = Field(foreign_key="projects.id", index=True, ondelete="CASCADE")
    step_name: str = Field(sa_column=Column(String(100), nullable=False))
    status: str = Field(default=StepStatus.PENDING, sa_column=Column(String(20), nullable=False))
    started_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    completed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    error_details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB(none_as_null=True)))
    retry_count: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    created_at: datetime = _ts(nullable=False)


class Credential(SQLModel, table=True):
    """A tenant secret, as ciphertext only. ``kind`` names it; ``key_id`` names the key that sealed it."""

    __tablename__ = "credentials"
    __table_args__ = (UniqueConstraint("project_id", "kind"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    project_id: uuid.UUID = Field(foreign_key="projects.id", index=True, ondelete="CASCADE")
    kind: str = Field(sa_column=Column(String(64), nullable=False))
    key_id: str = Field(sa_column=Column(String(64), nullable=False))
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
