"""The mirror's tables. Alembic migrations (``tenantflow/migrations``) create them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Identity,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from tenantflow.catalog import ProjectKind, ProjectStatus, RunKind, StepStatus

# The enums live in tenantflow.catalog; re-exported for the modules that read rows.
__all__ = [
    "ApiKey", "ConnectionRead", "Credential", "Project", "ProjectEvent", "ProjectKind", "ProjectStatus",
    "ProvisioningStep", "RateBudgetState",
    "ProvisioningStepAttempt", "StepStatus",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kw))


class Project(SQLModel, table=True):
    """A tenant: a project, or a user with a per-user graph database."""

    __tablename__ = "projects"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # Unique among tenants that are not deleted (partial unique indexes, migration 0003).
    name: str = Field(sa_column=Column(String(63), nullable=False))
    kind: str = Field(default=ProjectKind.PROJECT, sa_column=Column(String(20), nullable=False))
    idempotency_key: str | None = Field(
        default=None, sa_column=Column(String(255), nullable=True)
    )
    external_user_id: uuid.UUID | None = Field(default=None, nullable=True)
    status: str = Field(default=ProjectStatus.PENDING, sa_column=Column(String(20), nullable=False))
    # Fence of the workflow's status writes: a write with a lower sequence number is ignored.
    status_seq: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
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
    deleted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # The API key that created it (None: the settings' token, the signup webhook, older rows).
    created_by_key: uuid.UUID | None = Field(default=None, nullable=True)
    # When its provisioning run was let in (tenantflow.admission); None while it waits for a slot.
    admitted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class ProvisioningStep(SQLModel, table=True):
    """One step of one tenant's provisioning, as its activity and the workflow last reported it.

    The seed's columns keep their meaning (``status``, ``started_at``, ``completed_at``,
    ``error_message``, ``error_details``, ``retry_count``); ``result`` holds the step's output
    (or a skip's reason), never an error. ``(generation, attempt, phase)`` is the write fence:
    ``generation`` counts the operator retries of this step, ``attempt`` is Temporal's attempt
    within it, ``phase`` orders the writes of one attempt; a write older than the row's is ignored,
    and once the workflow has failed a generation (phase 3) no attempt of it writes the row again.
    """

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
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB(none_as_null=True)))
    generation: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    attempt: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    phase: int = Field(default=0, sa_column=Column(SmallInteger, nullable=False, server_default="0"))
    run_kind: str = Field(
        default=RunKind.PROVISION, sa_column=Column(String(20), nullable=False, server_default="provision")
    )


class ProvisioningStepAttempt(SQLModel, table=True):
    """One attempt of one step: the append-only story behind the step row (rows are inserted when
    an attempt starts and closed once, when it ends or is found lost; never rewritten after)."""

    __tablename__ = "provisioning_step_attempts"
    __table_args__ = (UniqueConstraint("project_id", "step_name", "generation", "attempt"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    project_id: uuid.UUID = Field(foreign_key="projects.id", index=True, ondelete="CASCADE")
    step_name: str = Field(sa_column=Column(String(100), nullable=False))
    generation: int = Field(sa_column=Column(Integer, nullable=False))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    started_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    outcome: str | None = Field(default=None, sa_column=Column(String(20)))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    error_details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB(none_as_null=True)))


class ProjectEvent(SQLModel, table=True):
    """One change of a step row or of a tenant's status, appended by the triggers of migration 0004
    (never by code), in commit order per project: what the event stream replays and follows."""

    __tablename__ = "project_events"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    project_id: uuid.UUID = Field(foreign_key="projects.id", ondelete="CASCADE")
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    data: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    at: datetime = _ts(nullable=False)


class ApiKey(SQLModel, table=True):
    """A client's API key: only its SHA-256 is kept (the key is 256 random bits, shown once)."""

    __tablename__ = "api_keys"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    name: str = Field(sa_column=Column(String(100), nullable=False))
    # The key's first characters, kept to find its row and to let people tell keys apart.
    prefix: str = Field(sa_column=Column(String(20), nullable=False, unique=True))
    key_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    scope: str = Field(sa_column=Column(String(20), nullable=False))
    created_at: datetime = _ts(nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class RateBudgetState(SQLModel, table=True):
    """One shared token bucket (``tenantflow.rate_budget``): its tokens as of ``updated_at``."""

    __tablename__ = "rate_budgets"

    name: str = Field(sa_column=Column(String(100), primary_key=True))
    tokens: float = Field(sa_column=Column(Float, nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ConnectionRead(SQLModel, table=True):
    """Audit: one read of a tenant's connection details (who, when; never what was read)."""

    __tablename__ = "connection_reads"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    project_id: uuid.UUID = Field(foreign_key="projects.id", ondelete="CASCADE")
    actor: str = Field(sa_column=Column(String(255), nullable=False))
    client: str | None = Field(default=None, sa_column=Column(String(255)))
    read_at: datetime = _ts(nullable=False)


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
