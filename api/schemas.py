"""Request and response bodies of the API.

Responses are built from mirror rows by the ``from_*`` constructors here, and only from the
fields listed: no model has a password or key field, so no secret can leak through one, except
the ``Connection*`` models of ``GET /v1/projects/{ref}/connection``, which exist to hand a tenant's
secrets to its owner and are filled in one place only (``api.connection``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from api.pagination import encode_cursor
from tenantflow.catalog import AttemptOutcome, RunKind, Scope, StepStatus, step_order
from tenantflow.errors import InvalidName
from tenantflow.models import Project, ProjectStatus, ProvisioningStep, ProvisioningStepAttempt
from tenantflow.names import PROJECT_NAME_RULE, canonical_uuid, validate_project_name
from tenantflow.store import ProjectSlice

# Per-user tenants are named ``u-<32 hex>`` (names.user_project_name); the project API may not
# take such a name, or a project could squat on a future user's tenant.
USER_TENANT_NAME_RE = re.compile(r"^u-[0-9a-f]{32}$")
# Path segments under /v1/projects that are routes, not project names.
RESERVED_NAMES = frozenset({"retry-failed"})


# ------------------------------------------------------------------------------------ requests
class ProjectCreate(BaseModel):
    """Body of ``POST /v1/projects``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description=f"Project name: {PROJECT_NAME_RULE}.", examples=["acme-prod"])

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        try:
            validate_project_name(name)
        except InvalidName as exc:
            # The message goes in as context, so braces in the name are not format fields.
            raise PydanticCustomError("invalid_project_name", "{reason}", {"reason": exc.message}) from None
        if name in RESERVED_NAMES:
            raise PydanticCustomError(
                "invalid_project_name", "invalid project name {name}: reserved by the API",
                {"name": repr(name)},
            )
        if USER_TENANT_NAME_RE.fullmatch(name):
            raise PydanticCustomError(
                "invalid_project_name",
                "invalid project name {name}: 'u-' + 32 hex digits is reserved for per-user tenants",
                {"name": repr(name)},
            )
        return name


class RetryCreate(BaseModel):
    """Optional body of ``POST /v1/projects/{id}/retry``."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, description="Why the step is retried (logged).")


class SignupEvent(BaseModel):
    """The auth service's database webhook for a row change in ``auth.users``.

    Only ``record.id`` is used; the rest of the record (the email...) is neither stored nor echoed.
    """

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(examples=["INSERT"])
    table: str = Field(examples=["users"])
    db_schema: str = Field(alias="schema", examples=["auth"])
    record: dict[str, Any] | None = Field(default=None, examples=[{"id": str(uuid.UUID(int=1))}])
    old_record: dict[str, Any] | None = None

    def ignore_reason(self) -> str | None:
        """Why this event neither creates nor deletes a user tenant, or None if it does one."""
        if (self.db_schema, self.table) != ("auth", "users") or self.type not in ("INSERT", "DELETE"):
            return (f"only INSERT and DELETE on auth.users are handled, not {self.type} on "
                    f"{self.db_schema}.{self.table}")
        return None

    @property
    def is_deletion(self) -> bool:
        return self.type == "DELETE"

    def user_id(self) -> uuid.UUID | None:
        """The user's id (``record.id``; ``old_record.id`` for a DELETE), or None when it is
        missing or not a UUID in its canonical 36-character form."""
        return canonical_uuid(((self.old_record if self.is_deletion else self.record) or {}).get("id"))


# ----------------------------------------------------------------------------------- responses
class AttemptOut(BaseModel):
    """One attempt of a step, from the append-only attempts history."""

    generation: int = Field(description="Operator retries of the step before this attempt.")
    attempt: int = Field(description="Temporal's attempt number within the generation (from 1).")
    started_at: datetime
    finished_at: datetime | None
    outcome: AttemptOutcome | None = Field(description="None while the attempt runs.")
    error_message: str | None
    error_details: dict[str, Any] | None

    @classmethod
    def from_row(cls, r: ProvisioningStepAttempt) -> AttemptOut:
        return cls(
            generation=r.generation, attempt=r.attempt, started_at=r.started_at, finished_at=r.finished_at,
            outcome=AttemptOutcome(r.outcome) if r.outcome else None, error_message=r.error_message,
            error_details=r.error_details,
        )


class StepRow(Protocol):
    """What ``StepOut`` reads of a step row: a ``ProvisioningStep``, or any row of the same columns."""

    step_name: str
    run_kind: str
    status: str
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    retry_count: int
    attempt: int
    error_message: str | None
    error_details: dict[str, Any] | None
    result: dict[str, Any] | None


class StepOut(BaseModel):
    name: str
    run_kind: RunKind = Field(description="provision, or deprovision for the teardown's steps.")
    status: StepStatus = Field(
        description="pending → running → success | skipped; a failed attempt that will be retried "
        "leaves it pending with that attempt's error; failed: waiting for a person's retry."
    )
    started_at: datetime | None
    completed_at: datetime | None
    retry_count: int = Field(description="Attempts after the first, operator retries included.")
    attempt: int = Field(description="The attempt the row last heard from (0: none yet).")
    error_message: str | None = Field(description="The last error; kept until the step succeeds.")
    error_details: dict[str, Any] | None = Field(description="Details of the last error (never a result).")
    result: dict[str, Any] | None = Field(description="The step's output, or why it was skipped.")
    attempts: list[AttemptOut] | None = Field(
        default=None, description="Every attempt, oldest first (on the steps endpoint only)."
    )

    @classmethod
    def from_rows(
        cls, kind: str, rows: Iterable[StepRow],
        attempts: Iterable[ProvisioningStepAttempt] | None = None,
    ) -> list[StepOut]:
        """Steps in the catalog's order for the tenant's kind: provisioning first, then teardown
        (unknown steps last)."""
        rank: dict[str, int] = {name: i for i, name in enumerate(step_order(kind))}
        ordered = sorted(rows, key=lambda r: (rank.get(r.step_name, len(rank)), r.created_at, r.step_name))
        history: dict[str, list[AttemptOut]] | None = None
        if attempts is not None:
            history = {r.step_name: [] for r in ordered}
            for a in attempts:
                history.setdefault(a.step_name, []).append(AttemptOut.from_row(a))
        return [
            cls(
                name=r.step_name, run_kind=RunKind(r.run_kind), status=StepStatus(r.status),
                started_at=r.started_at,
                completed_at=r.completed_at, retry_count=r.retry_count, attempt=r.attempt,
                error_message=r.error_message, error_details=r.error_details, result=r.result,
                attempts=history[r.step_name] if history is not None else None,
            )
            for r in ordered
        ]


class GraphInfo(BaseModel):
    """How to reach the tenant's graph database. The password is never part of it. Each field is
    the project's column of the same name prefixed with ``COLUMN_PREFIX``."""

    COLUMN_PREFIX: ClassVar[str] = "graph_"
    # A tenant has graph info once one of these columns is set (null: no graph database).
    PRESENT_WHEN_ANY_OF: ClassVar[tuple[str, ...]] = ("graph_backend", "graph_database")

    backend: str | None
    mode: str | None
    database: str | None
    status: str | None
    uri: str | None
    http_uri: str | None
    username: str | None

    @classmethod
    def from_project(cls, p: Project) -> GraphInfo | None:
        if all(getattr(p, column) is None for column in cls.PRESENT_WHEN_ANY_OF):
            return None
        return cls(
            backend=p.graph_backend, mode=p.graph_mode, database=p.graph_database, status=p.graph_status,
            uri=p.graph_uri, http_uri=p.graph_http_uri, username=p.graph_username,
        )


class ProjectSummary(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    status: str
    workflow_id: str = Field(description="The Temporal workflow id of the tenant's provisioning run.")
    graph: GraphInfo | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_project(cls, p: Project) -> ProjectSummary:
        return cls(
            id=p.id, name=p.name, kind=p.kind, status=p.status, workflow_id=p.workflow_id,
            graph=GraphInfo.from_project(p), created_at=p.created_at, updated_at=p.updated_at,
        )


class ProjectDetail(ProjectSummary):
    steps: list[StepOut]

    @classmethod
    def from_rows(cls, p: Project, steps: Iterable[StepRow]) -> ProjectDetail:
        return cls(**ProjectSummary.from_project(p).model_dump(), steps=StepOut.from_rows(p.kind, steps))


class ProjectPage(BaseModel):
    """One page of ``GET /v1/projects``, oldest first."""

    items: list[ProjectSummary]
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` for the next page; null on the last page (opaque)."
    )
    limit: int

    @classmethod
    def from_slice(cls, page: ProjectSlice, *, limit: int) -> ProjectPage:
        after = page.next_after
        return cls(
            items=[ProjectSummary.from_project(p) for p in page.projects],
            next_cursor=encode_cursor(after) if after else None, limit=limit,
        )


class StepsOut(BaseModel):
    project_id: uuid.UUID
    status: str
    steps: list[StepOut]


class PostgresConnection(BaseModel):
    """The tenant's own database, logged in as its own role."""

    url: str = Field(description="postgresql://user:password@host:port/database")
    host: str
    port: int
    database: str
    user: str
    password: str


class GraphConnection(BaseModel):
    """The tenant's graph database."""

    backend: str
    uri: str | None
    http_uri: str | None
    database: str | None
    username: str | None
    password: str | None = Field(
        description="None when the stored credential is the graph server's shared admin login "
        "(ArcadeDB, Neo4j Community fallback): it would open every tenant's graph."
    )
    password_withheld: str | None = Field(default=None, description="Why the password is None.")


class ApiKeys(BaseModel):
    """The tenant's API keys (JWTs signed with its JWT secret, which is not given out)."""

    anon: str
    service_role: str


class ConnectionOut(BaseModel):
    """Everything needed to reach an online tenant, secrets included (read is audited)."""

    postgres: PostgresConnection | None = Field(description="Null for a per-user tenant (graph only).")
    graph: GraphConnection | None = Field(description="Null when the tenant has no graph database.")
    keys: ApiKeys | None = Field(description="Null for a per-user tenant (graph only).")


class RetryAccepted(BaseModel):
    retrying_step: str


UserState = Literal["pending", "ready", "failed", "deleting", "deleted"]


class UserStatus(BaseModel):
    """A per-user tenant as the signed-up user's client sees it."""

    user_id: uuid.UUID
    project_id: uuid.UUID
    status: UserState
    steps: list[StepOut]
    graph: GraphInfo | None

    @classmethod
    def from_rows(cls, p: Project, steps: Iterable[ProvisioningStep]) -> UserStatus:
        assert p.external_user_id is not None
        states: dict[str, UserState] = {
            ProjectStatus.ONLINE: "ready", ProjectStatus.FAILED: "failed",
            ProjectStatus.DEPROVISIONING: "deleting", ProjectStatus.DELETED: "deleted",
        }
        state: UserState = states.get(p.status, "pending")
        return cls(
            user_id=p.external_user_id, project_id=p.id, status=state,
            steps=StepOut.from_rows(p.kind, steps), graph=GraphInfo.from_project(p),
        )


class SignupAccepted(BaseModel):
    user_id: uuid.UUID
    project_id: uuid.UUID
    workflow_id: str
    created: bool = Field(description="False when this delivery repeated an earlier one.")


class UserDeletionAccepted(BaseModel):
    user_id: uuid.UUID
    project_id: uuid.UUID
    workflow_id: str = Field(description="The deprovisioning run of the user's tenant.")


class WebhookIgnored(BaseModel):
    ignored: Literal[True] = True
    reason: str


class WebhookHealth(BaseModel):
    status: Literal["ok"] = "ok"
    webhook: str


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    temporal: str


# ----------------------------------------------------------------------------------- API keys
class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Who holds it (shown in audits).")
    scope: Scope = Field(description="read, write (create/retry/delete tenants) or admin (secrets, keys).")


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart.")
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown this once, store it now.")
