"""Reads and writes of the mirror tables (``projects``, ``provisioning_steps``,
``provisioning_step_attempts``, and the audit table ``connection_reads``).

Shared by the API (creates projects, reads status) and the activities (mirror step status).
Every write is idempotent, so a retried activity can repeat it safely, and every write of a step
row or of a project's status carries a fence: a write older than what the row holds (a paused
worker's attempt that Temporal already gave up on, a retried bookkeeping activity) is ignored, so
the mirror never goes back to a state that is over. An unreachable database is raised as
``MirrorUnavailable`` (retryable), in one place (``translate_outage``), which the API's status
reads on their own psycopg pool (``tenantflow.read_pool``) go through too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

import psycopg
from sqlalchemy import (
    ColumnElement,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by, array_agg, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tenantflow.catalog import (
    DONE_STEP_STATUSES,
    RUN_KIND_OF_STEP,
    AttemptOutcome,
    ProjectKind,
    RunKind,
    StepName,
)
from tenantflow.contracts import TenantFilter, WaitingRun
from tenantflow.errors import MirrorUnavailable
from tenantflow.models import (
    ConnectionRead,
    Credential,
    Project,
    ProjectEvent,
    ProjectStatus,
    ProvisioningStep,
    ProvisioningStepAttempt,
    StepStatus,
    utcnow,
)
from tenantflow.names import canonical_uuid

P = Project.__table__  # type: ignore[attr-defined]
S = ProvisioningStep.__table__  # type: ignore[attr-defined]
A = ProvisioningStepAttempt.__table__  # type: ignore[attr-defined]
C = Credential.__table__  # type: ignore[attr-defined]
R = ConnectionRead.__table__  # type: ignore[attr-defined]
E = ProjectEvent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, order=True)
class Fence:
    """Which attempt a step-row write comes from: ``generation`` counts the operator's retries of
    the step, ``attempt`` is Temporal's attempt number within it (0: the workflow's own write)."""

    generation: int
    attempt: int


def workflow_id_for(project_id: uuid.UUID, kind: str, name: str) -> str:
    """The business id of a provisioning run: one workflow per tenant. The (validated) name makes
    it recognisable in the Temporal Web UI; the id keeps a reused name's runs apart."""
    return f"provision-{kind}-{name}-{project_id}"


def deprovision_workflow_id(project_id: uuid.UUID, kind: str, name: str) -> str:
    """The business id of a tenant's deprovisioning run (at most one per tenant)."""
    return f"deprovision-{kind}-{name}-{project_id}"


@dataclass
class Created:
    project: Project
    created: bool


@dataclass(frozen=True)
class EventBatch:
    """A project's events after some id, and its status read just before them: when ``events`` is
    empty, ``status`` is the status after every event the reader has seen."""

    status: str
    events: list[ProjectEvent]


@dataclass(frozen=True)
class Keyset:
    """A tenant's place in the listing order: ``(created_at, id)``, unique and never changing."""

    created_at: datetime
    id: uuid.UUID

    @classmethod
    def of(cls, project: Project) -> Keyset:
        return cls(project.created_at, project.id)


@dataclass(frozen=True)
class ProjectQuery:
    """Which tenants ``Store.list_projects`` returns: every filter given must hold."""

    limit: int
    after: Keyset | None = None  # the last row of the previous page
    status: ProjectStatus | None = None
    kind: ProjectKind | None = None
    name_prefix: str | None = None
    failed_step: StepName | None = None  # tenants whose step of this name is ``failed``


@dataclass(frozen=True)
class ProjectSlice:
    """One page of tenants, and where the next page starts (None: this was the last)."""

    projects: list[Project]
    next_after: Keyset | None


def newest_first_statement(query: ProjectQuery) -> Select[Any]:
    """``project_page_statement`` walked backwards: newest first, the page starting before
    ``query.after`` (the same indexes, scanned backwards)."""
    statement = project_page_statement(dataclasses.replace(query, after=None))
    if query.after is not None:
        statement = statement.where(
            tuple_(P.c.created_at, P.c.id) < tuple_(query.after.created_at, query.after.id)
        )
    return statement.order_by(None).order_by(P.c.created_at.desc(), P.c.id.desc())


@dataclass(frozen=True)
class StepSummary:
    """A tenant's steps in one line (the console's list): the step under way or waiting for a
    person, and when provisioning was done."""

    current_step: str | None  # of the latest run: failed, else running, else retrying
    current_status: str | None  # failed | running | pending (an attempt failed; Temporal retries it)
    current_error: str | None  # that step's last error
    online_at: datetime | None  # when the last provisioning step finished, once every one had


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching the strings that start with ``prefix``, taken literally (``%``, ``_``
    and the escape character ``\\`` in it match only themselves)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def project_page_statement(query: ProjectQuery) -> Select[Any]:
    """The SELECT of one page: ``limit + 1`` rows, the extra one saying whether a next page exists.

    Each filter is served by an index of migration 0003 (status: ``(status, created_at, id)``;
    name prefix: ``text_pattern_ops``; failed step: the partial index on failed step rows) and the
    order by ``(created_at, id)`` (migration 0001).
    """
    where: list[ColumnElement[bool]] = []
    if query.after is not None:
        where.append(tuple_(P.c.created_at, P.c.id) > tuple_(query.after.created_at, query.after.id))
    if query.status is not None:
        where.append(P.c.status == query.status)
    if query.kind is not None:
        where.append(P.c.kind == query.kind)
    if query.name_prefix is not None:
        where.append(P.c.name.like(like_prefix(query.name_prefix), escape="\\"))
    if query.failed_step is not None:
        where.append(
            select(S.c.project_id)
            .where(S.c.project_id == P.c.id, S.c.step_name == query.failed_step,
                   S.c.status == StepStatus.FAILED)
            .exists()
        )
    return select(P).where(*where).order_by(P.c.created_at, P.c.id).limit(query.limit + 1)


def step_summary_statement(project_ids: Sequence[uuid.UUID]) -> Select[Any]:
    """One row per tenant, aggregated over its step rows (``StepSummary``'s columns)."""
    noteworthy = or_(
        S.c.status.in_([StepStatus.FAILED, StepStatus.RUNNING]),
        and_(S.c.status == StepStatus.PENDING, S.c.error_message.is_not(None)),
    )
    # The teardown's rows exist only once a deletion began: then they are the story, not the
    # provisioning's (whose failed step stays failed, as history).
    rank = (
        (S.c.run_kind == RunKind.DEPROVISION).desc(),
        case((S.c.status == StepStatus.FAILED, 0), (S.c.status == StepStatus.RUNNING, 1), else_=2),
        S.c.started_at.desc().nulls_last(),
    )

    def first(column: Any) -> Any:
        return array_agg(aggregate_order_by(column, *rank)).filter(noteworthy)[1]

    provision = S.c.run_kind == RunKind.PROVISION
    done = S.c.status.in_([StepStatus.SUCCESS, StepStatus.SKIPPED])
    online_at = case((func.bool_and(done).filter(provision), func.max(S.c.completed_at).filter(provision)))
    return (
        select(
            S.c.project_id, first(S.c.step_name).label("current_step"),
            first(S.c.status).label("current_status"), first(S.c.error_message).label("current_error"),
            online_at.label("online_at"),
        )
        .where(S.c.project_id.in_(project_ids))
        .group_by(S.c.project_id)
    )


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # ---------------------------------------------------------------- projects
    async def create_project(
        self,
        *,
        name: str,
        kind: str,
        steps: Sequence[str],
        idempotency_key: str | None = None,
        external_user_id: uuid.UUID | None = None,
        fields: dict[str, Any] | None = None,
    ) -> Created:
        """Insert a project with pending step rows, or return the one that already holds the
        name / idempotency key / user id. Safe under any number of concurrent callers."""
        pid = uuid.uuid4()
        now = utcnow()
        values = dict(
            id=pid, name=name, kind=kind, idempotency_key=idempotency_key,
            external_user_id=external_user_id, status=ProjectStatus.PENDING,
            workflow_id=workflow_id_for(pid, kind, name), created_at=now, updated_at=now,
            **(fields or {}),
        )
        # One statement: the project, and its step rows if it is new.
        project = insert(P).values(**values).on_conflict_do_nothing().returning(P).cte("new_project")
        created = select(project).add_cte(_new_step_rows(project, literal(now, S.c.created_at.type))
                                          .cte("new_steps"))
        async with self._write_one() as conn:
            inserted = (await conn.execute(created, _params(**_step_values(steps)))).mappings().first()
        if inserted is not None:
            return Created(Project(**inserted), True)
        existing = await self.find_existing(
            name=name, idempotency_key=idempotency_key, external_user_id=external_user_id
        )
        if existing is None:  # the conflicting row vanished between the two statements
            return await self.create_project(
                name=name, kind=kind, steps=steps, idempotency_key=idempotency_key,
                external_user_id=external_user_id, fields=fields,
            )
        return Created(existing, False)

    async def find_existing(
        self, *, name: str, idempotency_key: str | None, external_user_id: uuid.UUID | None
    ) -> Project | None:
        conds = [P.c.name == name]
        if idempotency_key is not None:
            conds.append(P.c.idempotency_key == idempotency_key)
        if external_user_id is not None:
            conds.append(P.c.external_user_id == external_user_id)
        async with self._read() as conn:
            row = (
                await conn.execute(select(P).where(or_(*conds), P.c.status != ProjectStatus.DELETED).limit(1))
            ).mappings().first()
        return Project(**row) if row else None

    async def get_project_by_ref(self, ref: str) -> Project | None:
        """The tenant ``ref`` names: a project id, or a name (the live tenant holding it, else the
        most recently deleted one, whose row stays for audit)."""
        async with self._read() as conn:
            row = (await conn.execute(select(P).where(P.c.id == _ref_to_id(ref)))).mappings().first()
        return Project(**row) if row else None

    async def get_project(self, project_id: uuid.UUID) -> Project | None:
        async with self._read() as conn:
            row = (await conn.execute(select(P).where(P.c.id == project_id))).mappings().first()
        return Project(**row) if row else None

    async def get_user_project(self, user_id: uuid.UUID) -> Project | None:
        async with self._read() as conn:
            live_first = case((P.c.status == ProjectStatus.DELETED, 1), else_=0)
            row = (
                await conn.execute(
                    select(P).where(P.c.external_user_id == user_id)
                    .order_by(live_first, P.c.created_at.desc()).limit(1)
                )
            ).mappings().first()
        return Project(**row) if row else None

    async def list_projects(self, query: ProjectQuery) -> ProjectSlice:
        """One page of tenants in ``(created_at, id)`` order, after ``query.after``.

        Keyset pagination: the page is found through an index whatever its depth (no OFFSET, no
        count of all tenants), and a tenant created while a client walks the pages neither shifts
        nor repeats the rows it has seen.
        """
        async with self._read() as conn:
            rows = (await conn.execute(project_page_statement(query))).mappings().all()
        projects = [Project(**r) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        return ProjectSlice(projects, Keyset.of(projects[-1]) if more else None)

    async def list_projects_newest_first(self, query: ProjectQuery) -> ProjectSlice:
        """``list_projects`` in the other direction: the newest tenants first, then older pages
        (``query.after``: the last, oldest row of the previous page)."""
        async with self._read() as conn:
            rows = (await conn.execute(newest_first_statement(query))).mappings().all()
        projects = [Project(**r) for r in rows[: query.limit]]
        return ProjectSlice(projects, Keyset.of(projects[-1]) if len(rows) > query.limit else None)

    async def count_by_status(self) -> dict[str, int]:
        """How many tenants have each status (statuses that no tenant has are missing)."""
        query = select(P.c.status, func.count()).group_by(P.c.status)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return {status: count for status, count in rows}

    async def step_summaries(self, project_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StepSummary]:
        """``StepSummary`` of each of these tenants, in one query (tenants without step rows are
        missing)."""
        if not project_ids:
            return {}
        async with self._read() as conn:
            rows = (await conn.execute(step_summary_statement(project_ids))).all()
        return {
            r.project_id: StepSummary(r.current_step, r.current_status, r.current_error, r.online_at)
            for r in rows
        }

    async def waiting_runs(self, filter: TenantFilter) -> list[WaitingRun]:
        """Tenants whose run waits on a failed step, matching ``filter``, oldest first; with the
        workflow id of the run that waits (provisioning or deprovisioning)."""
        conds = [P.c.status == ProjectStatus.FAILED, S.c.status == StepStatus.FAILED]
        if filter.failed_step:
            conds.append(S.c.step_name == filter.failed_step)
        if filter.kind:
            conds.append(P.c.kind == filter.kind)
        if filter.name_prefix:
            conds.append(P.c.name.startswith(filter.name_prefix, autoescape=True))
        query = (
            select(P.c.id, P.c.name, P.c.kind, P.c.workflow_id, S.c.step_name, S.c.run_kind)
            .join(S, S.c.project_id == P.c.id).where(*conds).order_by(P.c.created_at, P.c.id)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            WaitingRun(
                project_id=str(r.id), tenant_id=r.name, failed_step=r.step_name,
                workflow_id=r.workflow_id if r.run_kind == RunKind.PROVISION
                else deprovision_workflow_id(r.id, r.kind, r.name),
            )
            for r in rows
        ]

    async def update_project(self, project_id: uuid.UUID, **values: Any) -> None:
        async with self._write_one() as conn:
            await conn.execute(
                update(P).where(P.c.id == project_id).values(**values, updated_at=utcnow())
            )

    async def set_project_status(self, project_id: uuid.UUID, status: str, *, seq: int | None = None) -> None:
        """Set the tenant's status; with ``seq`` (the workflow's write counter) only if no later
        status write has landed already."""
        async with self._write_one() as conn:
            await conn.execute(_status_write(*_status_literals(project_id, status, seq)))

    async def stalled_projects(
        self, *, updated_before: datetime, waiting_too: bool = False, limit: int = 500
    ) -> list[Project]:
        """Tenants ``pending`` (and let in) or ``deprovisioning`` since before ``updated_before``,
        oldest first: the ones whose run may never have been started (the reconciler's
        candidates). A tenant waiting for a slot has no run yet by design: admission starts it
        (``waiting_too``: those as well, when there is no cap any more)."""
        let_in = or_(P.c.status == ProjectStatus.DEPROVISIONING, P.c.admitted_at.is_not(None),
                     literal(waiting_too))
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(P)
                    .where(P.c.status.in_([ProjectStatus.PENDING, ProjectStatus.DEPROVISIONING]),
                           let_in, P.c.updated_at < updated_before)
                    .order_by(P.c.updated_at).limit(limit)
                )
            ).mappings().all()
        return [Project(**r) for r in rows]

    # ------------------------------------------------------------ admission
    async def admit(self, project_id: uuid.UUID, *, cap: int) -> bool:
        """Let the tenant's provisioning run in if fewer than ``cap`` runs are in flight and no
        tenant created before it waits (``cap`` 0: no cap). Returns whether it is in, now or
        from before; a tenant that is no longer ``pending`` is not let in."""
        if not cap:  # nothing to decide: one statement, and no create waits for another
            async with self._write_one() as conn:
                return bool(await conn.scalar(_ADMIT_UNCAPPED, _params(project_id=project_id, now=utcnow())))
        async with self._write() as conn:
            await _admission_turn(conn)
            row = (await conn.execute(
                select(P.c.status, P.c.admitted_at, P.c.created_at).where(P.c.id == project_id)
            )).one()
            if row.admitted_at is not None:
                return True
            if row.status != ProjectStatus.PENDING:
                return False
            ahead = select(P.c.id).where(_waiting(), P.c.created_at < row.created_at).exists()
            if await conn.scalar(select(ahead)) or await _in_flight(conn) >= cap:
                return False
            await conn.execute(update(P).where(P.c.id == project_id).values(admitted_at=utcnow()))
            return True

    async def admit_waiting(self, *, cap: int) -> list[Project]:
        """Let in the tenants waiting for a slot, oldest first, as many as ``cap`` (at least 1) has
        room for (at most ``ADMIT_BATCH`` a call); returns them in that order. With no cap the API
        lets every tenant in itself (``admit``), so nobody calls this."""
        async with self._write() as conn:
            # Polled by every worker: nobody waiting (the usual case) costs one indexed read,
            # not a turn at the lock every create takes too.
            if not await conn.scalar(select(select(P.c.id).where(_waiting()).exists())):
                return []
            await _admission_turn(conn)
            room = min(cap - await _in_flight(conn), ADMIT_BATCH)
            if room <= 0:
                return []
            oldest = select(P.c.id).where(_waiting()).order_by(P.c.created_at, P.c.id).limit(room)
            rows = (await conn.execute(
                update(P).where(P.c.id.in_(oldest.scalar_subquery()))
                .values(admitted_at=utcnow()).returning(P)
            )).mappings().all()
        return sorted((Project(**r) for r in rows), key=lambda p: (p.created_at, p.id))

    # ------------------------------------------------------------ events
    async def events_after(self, project_id: uuid.UUID, after: int, *, limit: int = 200) -> EventBatch:
        """The project's events with an id above ``after``, oldest first, at most ``limit``.

        The status is read first: every event of the change that set it has committed by then
        (the triggers write both in one transaction), so an empty batch with a settled status
        means the reader has seen everything up to that status."""
        async with self._read() as conn:
            status = (await conn.execute(select(P.c.status).where(P.c.id == project_id))).scalar_one()
            rows = (
                await conn.execute(
                    select(E).where(E.c.project_id == project_id, E.c.id > after)
                    .order_by(E.c.id).limit(limit)
                )
            ).mappings().all()
        return EventBatch(status, [ProjectEvent(**r) for r in rows])

    # ------------------------------------------------------------ audit
    async def record_connection_read(self, project_id: uuid.UUID, *, actor: str, client: str | None) -> None:
        """Record that ``actor`` (from ``client``) read the tenant's connection details."""
        async with self._write() as conn:
            await conn.execute(
                insert(R).values(project_id=project_id, actor=actor, client=client, read_at=utcnow())
            )

    async def list_connection_reads(self, project_id: uuid.UUID) -> list[ConnectionRead]:
        """Every recorded read of the tenant's connection details, oldest first."""
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(R).where(R.c.project_id == project_id).order_by(R.c.read_at, R.c.id)
                )
            ).mappings().all()
        return [ConnectionRead(**r) for r in rows]

    # ------------------------------------------------------------------- steps
    async def get_steps(self, project_id: uuid.UUID) -> list[ProvisioningStep]:
        async with self._read() as conn:
            rows = (
                await conn.execute(select(S).where(S.c.project_id == project_id))
            ).mappings().all()
        return [ProvisioningStep(**r) for r in rows]

    async def get_attempts(self, project_id: uuid.UUID) -> list[ProvisioningStepAttempt]:
        """Every recorded attempt of the tenant's steps, oldest first."""
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(A).where(A.c.project_id == project_id).order_by(A.c.started_at, A.c.id)
                )
            ).mappings().all()
        return [ProvisioningStepAttempt(**r) for r in rows]

    async def ensure_steps(self, project_id: uuid.UUID, steps: Sequence[str]) -> None:
        """Create missing step rows as pending (rows that exist are left alone)."""
        project = select(P.c.id).where(P.c.id == project_id).cte("project")
        async with self._write_one() as conn:
            await conn.execute(_new_step_rows(project, literal(utcnow(), S.c.created_at.type)),
                               _params(**_step_values(steps)))

    async def begin_run(
        self, project_id: uuid.UUID, steps: Sequence[str], status: str, *, seq: int | None
    ) -> bool:
        """A run begins: every step of it has a row (pending if new) and the tenant takes the run's
        ``status`` (fenced by ``seq`` when given, like ``set_project_status``). One statement
        (``_BEGIN_RUN``). Returns whether the project exists (if not, nothing is written)."""
        params = _params(project_id=project_id, status=status, seq=seq, now=utcnow(),
                         **_step_values(steps))
        async with self._write_one() as conn:
            return bool(await conn.scalar(_BEGIN_RUN, params))

    async def attempt_started(self, project_id: uuid.UUID, step: str, fence: Fence) -> None:
        """An attempt begins: the row turns ``running`` (the last error stays visible), the attempt
        is recorded, earlier attempts that never reported back are closed as ``lost``, and
        ``retry_count`` becomes the number of attempts so far minus one (it never goes down).
        An attempt that starts after a newer one already wrote the row (a paused worker running a
        task it was handed before the pause) records nothing: it cannot change the story.
        One statement (``_ATTEMPT_STARTED``)."""
        async with self._write_one() as conn:
            await conn.execute(_ATTEMPT_STARTED, _attempt_params(project_id, step, fence))

    async def attempt_finished(
        self,
        project_id: uuid.UUID,
        step: str,
        fence: Fence,
        *,
        outcome: AttemptOutcome,
        result: dict[str, Any] | None = None,
        error_message: str | None = None,
        error_details: dict[str, Any] | None = None,
        retryable: bool = False,
    ) -> None:
        """An attempt ends. Success and skip set ``result`` and clear the error; a failed attempt
        that Temporal will retry leaves the row ``pending`` with this attempt's error; a failure
        that cannot be retried only records its error (the workflow writes ``failed``). The
        report of an attempt a newer one has superseded records nothing (its own attempt row, if
        it has one, was closed as lost when the newer one began). One statement, like
        ``attempt_started``."""
        if outcome is AttemptOutcome.SUCCESS:
            status: StepStatus | None = StepStatus.SUCCESS
        elif outcome is AttemptOutcome.SKIPPED:
            status = StepStatus.SKIPPED
        else:
            status = StepStatus.PENDING if retryable else None  # None: the status stays
        params = _attempt_params(project_id, step, fence, outcome=outcome, status=status, result=result,
                                 error_message=error_message, error_details=error_details)
        async with self._write_one() as conn:
            await conn.execute(_ATTEMPT_FINISHED, params)

    async def step_failed(
        self, project_id: uuid.UUID, step: str, *, generation: int, message: str, details: dict[str, Any]
    ) -> None:
        """The workflow's final failure of ``generation``: the row turns ``failed`` and waits for a
        person. The last attempt's own error is kept when it reported one (it knows more), with the
        workflow's view (e.g. ``retry_state``) added; else (a timeout, a lost worker) the
        workflow's message is the error. Unfinished attempts are closed as lost: the row is locked
        first, so an attempt whose start is still in its transaction is waited for and closed too.
        No attempt of ``generation`` writes the row after this (``_fence_key``)."""
        now = utcnow()
        seen = literal(details, JSONB)
        reported = and_(
            S.c.generation == generation, S.c.phase == Phase.FINISHED, S.c.error_message.is_not(None)
        )
        async with self._write() as conn:
            await _lock_step_rows(conn, project_id, S.c.step_name == step)
            await conn.execute(_close_lost_attempts(
                project_id, step, before=_fence_sql(Fence(generation + 1, 0)), now=now
            ))
            await conn.execute(
                update(S)
                .where(S.c.project_id == project_id, S.c.step_name == step, S.c.generation <= generation)
                .values(
                    status=StepStatus.FAILED, generation=generation, phase=Phase.FAILED,
                    completed_at=case((reported, S.c.completed_at), else_=now),
                    error_message=case((reported, S.c.error_message), else_=message),
                    # jsonb || jsonb: keys of the right side win, so the activity's details stay.
                    error_details=case(
                        (reported, seen.op("||")(func.coalesce(S.c.error_details, literal({}, JSONB)))),
                        else_=seen,
                    ),
                )
            )

    async def cancel_open_steps(self, project_id: uuid.UUID, run_kind: RunKind) -> int:
        """A cancelled run's steps that were under way go back to ``pending`` with the reason (a
        ``failed`` one keeps its failure as history), and their unfinished attempts are closed as
        lost (the rows are locked first, as in ``step_failed``). Returns how many steps that touched."""
        now = utcnow()
        async with self._write() as conn:
            await _lock_step_rows(conn, project_id, S.c.run_kind == run_kind)
            await conn.execute(
                update(A)
                .where(A.c.project_id == project_id, A.c.finished_at.is_(None),
                       A.c.step_name.in_(select(S.c.step_name).where(
                           S.c.project_id == project_id, S.c.run_kind == run_kind)))
                .values(finished_at=now, outcome=AttemptOutcome.LOST,
                        error_message="cancelled: the tenant is being deprovisioned")
            )
            touched = await conn.execute(
                update(S)
                .where(S.c.project_id == project_id, S.c.run_kind == run_kind,
                       S.c.status == StepStatus.RUNNING)
                # A new generation: a late write of the cancelled attempt cannot undo this.
                .values(status=StepStatus.PENDING, completed_at=now,
                        error_message="cancelled: the tenant is being deprovisioned",
                        generation=S.c.generation + 1, attempt=0, phase=Phase.RESET)
            )
        return touched.rowcount

    async def mark_deleted(self, project_id: uuid.UUID, *, seq: int | None) -> None:
        """The end of a deprovisioning: every stored secret of the tenant destroyed and the tenant
        ``deleted``, in one transaction (the row and its steps stay for audit)."""
        project, deleted, fence, now = _status_literals(project_id, ProjectStatus.DELETED, seq)
        async with self._write() as conn:
            await conn.execute(delete(C).where(C.c.project_id == project_id))
            await conn.execute(_status_write(project, deleted, fence, now).values(deleted_at=now))

    async def step_reset(self, project_id: uuid.UUID, step: str, *, generation: int) -> None:
        """FAILED → PENDING for an operator's retry, which starts ``generation``. The last error
        stays visible until the step succeeds; ``retry_count`` goes on counting."""
        fence = Fence(generation, 0)
        async with self._write_one() as conn:
            await conn.execute(
                _fenced_update(project_id, step, _fence_sql(fence), Phase.RESET).values(
                    status=StepStatus.PENDING, started_at=None, completed_at=None,
                    **_fence_values(fence, Phase.RESET),
                )
            )

    # --------------------------------------------------------------- plumbing
    @contextlib.asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection in autocommit: each statement is its own transaction, without BEGIN and
        COMMIT round trips around it (they were half of the status read's)."""
        with translate_outage():
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn

    # A read is one statement (or statements that each want the newest data).
    _read = _autocommit
    # A write made of one statement (the run's begin, an attempt's start and end, a status).
    _write_one = _autocommit

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        with translate_outage():
            async with self.engine.begin() as conn:
                yield conn


def _ref_to_id(ref: str) -> Any:
    """The project id a ``{ref}`` stands for, as an SQL expression: the id itself, or the tenant
    holding that name (``id_of_name``)."""
    project_id = canonical_uuid(ref)
    if project_id is not None:
        return literal(project_id)
    return id_of_name(ref)


def id_of_name(name: Any) -> Any:
    """The id of the tenant holding ``name`` (a value or a bind parameter), as a scalar subquery:
    the live tenant first, else the latest deleted one."""
    live_first = case((P.c.status == ProjectStatus.DELETED, 1), else_=0)
    return (
        select(P.c.id).where(P.c.name == name).order_by(live_first, P.c.created_at.desc()).limit(1)
        .scalar_subquery()
    )


class Phase(IntEnum):
    """Order of the writes to a step row within one attempt (the fence's last component)."""

    RESET = 0  # the workflow: pending again for an operator's retry (a new generation)
    STARTED = 1  # an attempt began
    FINISHED = 2  # an attempt ended: success, skipped, or failed
    FAILED = 3  # the workflow: the generation failed for good


ATTEMPT_KEY = [A.c.project_id, A.c.step_name, A.c.generation, A.c.attempt]


def _fence_values(fence: Fence, phase: Phase) -> dict[str, int]:
    return dict(generation=fence.generation, attempt=fence.attempt, phase=phase)


def _status_literals(project_id: uuid.UUID, status: str, seq: int | None) -> tuple[Any, Any, Any, Any]:
    """``_status_write``'s arguments as literals, at this moment."""
    return (literal(project_id, P.c.id.type), literal(status, P.c.status.type),
            literal(seq, P.c.status_seq.type), literal(utcnow(), P.c.updated_at.type))


def _status_write(project_id: Any, status: Any, seq: Any, now: Any) -> Update:
    """UPDATE of a tenant's status (SQL values). With ``seq``, the run's count of its status
    writes, it applies only if no later write has landed (None: not fenced, ``status_seq`` stays)."""
    return (
        update(P)
        .where(P.c.id == project_id, or_(seq.is_(None), P.c.status_seq <= seq))
        .values(status=status, updated_at=now, status_seq=func.coalesce(seq, P.c.status_seq))
    )


def _fence_sql(fence: Fence) -> tuple[Any, Any]:
    """The fence's (generation, attempt) as SQL values."""
    return literal(fence.generation), literal(fence.attempt)


def _fence_key(generation: Any, attempt: Any, phase: Any) -> Any:
    """A fence as one SQL row value, ordered from oldest to newest write: by generation, then
    whether it is the workflow's final failure of that generation (no attempt of a failed
    generation is newer than its failure, whatever its number: Temporal may have handed one to a
    worker that paused before it wrote), then attempt, then phase."""
    return tuple_(generation, phase == literal(int(Phase.FAILED)), attempt, phase)


def _fenced_update(project_id: Any, step: Any, fence: tuple[Any, Any], phase: Phase) -> Update:
    """UPDATE of one step row that applies only if the row's fence is not newer than this write's
    (``fence``: its generation and attempt as SQL values, ``_fence_sql`` or bind parameters)."""
    generation, attempt = fence
    return update(S).where(
        S.c.project_id == project_id,
        S.c.step_name == step,
        _fence_key(S.c.generation, S.c.attempt, S.c.phase)
        <= _fence_key(generation, attempt, literal(int(phase))),
    )


async def _lock_step_rows(conn: AsyncConnection, project_id: uuid.UUID, which: ColumnElement[bool]) -> None:
    """Lock the project's step rows ``which`` selects (in name order) for the rest of the
    transaction. A multi-statement write takes them first: it then waits for an attempt's start
    still in its transaction, and its next statement sees that attempt (read committed)."""
    await conn.execute(
        select(S.c.id).where(S.c.project_id == project_id, which).order_by(S.c.step_name).with_for_update()
    )


# Who is let in is decided one transaction at a time, by every API process and worker alike, so
# the cap on runs in flight holds (tenantflow.admission).
ADMISSION_LOCK_KEY = 0x7466_6164_6D69_74  # "tfadmit"
ADMIT_BATCH = 100


async def _admission_turn(conn: AsyncConnection) -> None:
    await conn.execute(select(func.pg_advisory_xact_lock(ADMISSION_LOCK_KEY)))


def _waiting() -> ColumnElement[bool]:
    """Tenants waiting for a slot: new, and not let in yet."""
    return and_(P.c.status == ProjectStatus.PENDING, P.c.admitted_at.is_(None))


async def _in_flight(conn: AsyncConnection) -> int:
    """Runs let in whose tenant has not left ``pending``/``provisioning``: the runs the cap counts."""
    count = await conn.scalar(
        select(func.count()).select_from(P)
        .where(P.c.status.in_([ProjectStatus.PENDING, ProjectStatus.PROVISIONING]),
               P.c.admitted_at.is_not(None))
    )
    return int(count or 0)


LOST_MESSAGE = "the attempt never reported back (its worker died, paused or timed out)"


def _close_lost_attempts(project_id: Any, step: Any, *, before: tuple[Any, Any], now: Any) -> Update:
    """Close the unfinished attempts older than ``before`` (a fence as SQL values): they will
    never report back."""
    return (
        update(A)
        .where(
            A.c.project_id == project_id, A.c.step_name == step, A.c.finished_at.is_(None),
            tuple_(A.c.generation, A.c.attempt) < tuple_(*before),
        )
        .values(finished_at=now, outcome=AttemptOutcome.LOST,
                error_message=LOST_MESSAGE)
    )


# ------------------------------------------------------- the writes every run makes, built once
# A run's begin, each attempt's start and end, and an uncapped admission (one per create) are
# one statement each, built once here with bind parameters and run in autocommit: one round trip
# and one transaction of their own, where the transactions they replace took five to seven round
# trips (and the statements' construction a millisecond of the worker's CPU each). An attempt's
# statement first reads the step row FOR UPDATE in a CTE (``_not_superseded``), and every part of
# the write is conditional on it.

# SQLAlchemy keeps a column's own name for its parameter in an UPDATE's SET: ours are prefixed.
_PARAM_PREFIX = "p_"


def _bound(name: str, column: Any, *, array: bool = False) -> Any:
    """The bind parameter ``name`` (prefixed), typed like ``column`` (or an array of it)."""
    return bindparam(_PARAM_PREFIX + name, type_=ARRAY(column.type) if array else column.type)


def _params(**values: Any) -> dict[str, Any]:
    """The values of the parameters ``_bound`` names."""
    return {_PARAM_PREFIX + name: value for name, value in values.items()}


_PROJECT, _STEP = _bound("project_id", S.c.project_id), _bound("step_name", S.c.step_name)
_GENERATION, _ATTEMPT = _bound("generation", S.c.generation), _bound("attempt", S.c.attempt)
_NOW = _bound("now", S.c.started_at)


def _attempt_params(project_id: uuid.UUID, step: str, fence: Fence, **values: Any) -> dict[str, Any]:
    """The parameters of ``_ATTEMPT_STARTED`` (and, with ``values``, ``_ATTEMPT_FINISHED``)."""
    return _params(project_id=project_id, step_name=step, generation=fence.generation,
                   attempt=fence.attempt, now=utcnow(), **values)


def _fenced_row() -> Any:
    """The step row's fence, read FOR UPDATE in a CTE of the write's own statement: the lock is
    taken before any part of the statement writes, and held to its end. Read committed: if a
    concurrent write of the row commits first, this read waits for it and sees its fence."""
    return (
        select(S.c.generation, S.c.attempt, S.c.phase)
        .where(S.c.project_id == _PROJECT, S.c.step_name == _STEP)
        .with_for_update()
        .cte("fenced_row")
    )


def _not_superseded(row: Any, phase: Phase) -> ColumnElement[bool]:
    """True if the step row holds no write newer than this attempt's ``phase`` (or there is no
    row). The row's UPDATE re-checks its own fence against the row's newest version too."""
    newer = _fence_key(row.c.generation, row.c.attempt, row.c.phase) > _fence_key(
        _GENERATION, _ATTEMPT, literal(int(phase))
    )
    return ~select(row).where(newer).exists()


def _insert_attempt_row(when: ColumnElement[bool], **values: Any) -> Any:
    """INSERT of this attempt's row, if ``when``; ``values`` beyond its key and start."""
    row = dict(project_id=_PROJECT, step_name=_STEP, generation=_GENERATION, attempt=_ATTEMPT,
               started_at=_NOW, **values)
    return insert(A).from_select(list(row), select(*row.values()).where(when))


def _attempt_started_statement() -> Update:
    row = _fenced_row()
    go = _not_superseded(row, Phase.STARTED)
    recorded = (
        _insert_attempt_row(go).on_conflict_do_nothing(index_elements=ATTEMPT_KEY)
        .returning(A.c.id).cte("recorded")
    )
    # Earlier attempts still open are closed as lost, in two parts, because the statement's
    # snapshot predates its lock. The attempt that started last (the one the row names, if it
    # has not ended) may have committed while this statement waited for the lock, unseen by an
    # UPDATE: it is closed by an INSERT ... ON CONFLICT DO UPDATE, which acts on the newest
    # committed row whatever the snapshot. Any older open one was committed before that
    # attempt's own start, and is closed by it or seen here.
    named = and_(row.c.phase == Phase.STARTED,
                 tuple_(row.c.generation, row.c.attempt) < tuple_(_GENERATION, _ATTEMPT))
    lost_values = dict(finished_at=_NOW, outcome=literal(AttemptOutcome.LOST, A.c.outcome.type),
                       error_message=literal(LOST_MESSAGE, A.c.error_message.type))
    lost_named = (
        insert(A).from_select(
            ["project_id", "step_name", "generation", "attempt", "started_at", *lost_values],
            select(_PROJECT, _STEP, row.c.generation, row.c.attempt, _NOW, *lost_values.values())
            .where(named, go),
        )
        .on_conflict_do_update(index_elements=ATTEMPT_KEY, set_=lost_values,
                               where=A.c.finished_at.is_(None))
    )
    the_named_one = select(row).where(
        named, row.c.generation == A.c.generation, row.c.attempt == A.c.attempt
    ).exists()
    lost_seen = (
        _close_lost_attempts(_PROJECT, _STEP, before=(_GENERATION, _ATTEMPT), now=_NOW)
        .where(go, ~the_named_one)  # one statement cannot change a row twice
    )
    # The snapshot does not see this statement's own insert: it is counted from ``recorded``.
    # (Nor an attempt that committed while the statement waited for the lock: ``attempt - 1``
    # and the row's own count, which never goes down, bound it then.)
    attempts = (
        select(func.count()).select_from(A)
        .where(A.c.project_id == _PROJECT, A.c.step_name == _STEP).scalar_subquery()
        + select(func.count()).select_from(recorded).scalar_subquery()
    )
    return (
        _fenced_update(_PROJECT, _STEP, (_GENERATION, _ATTEMPT), Phase.STARTED).where(go)
        .values(status=StepStatus.RUNNING, started_at=_NOW, completed_at=None,
                retry_count=func.greatest(S.c.retry_count, attempts - 1, _ATTEMPT - 1),
                generation=_GENERATION, attempt=_ATTEMPT, phase=Phase.STARTED)
        .add_cte(lost_named.cte("lost_named"), lost_seen.cte("lost_seen"))
    )


def _attempt_finished_statement() -> Update:
    """Parameters beyond ``_attempt_params``: ``outcome``; ``status`` (None: it stays; a done
    status sets ``result``); ``error_message`` and ``error_details`` (None when done: the error is
    cleared)."""
    go = _not_superseded(_fenced_row(), Phase.FINISHED)
    # The attempt's own row is closed once: a late report of an attempt already closed as lost
    # does not rewrite the history.
    closing = dict(finished_at=_NOW, outcome=_bound("outcome", A.c.outcome),
                   error_message=_bound("error_message", A.c.error_message),
                   error_details=_bound("error_details", A.c.error_details))
    closed = (
        _insert_attempt_row(go, **closing)
        .on_conflict_do_update(index_elements=ATTEMPT_KEY, set_=closing, where=A.c.finished_at.is_(None))
        .cte("closed")
    )
    status = _bound("status", S.c.status)
    return (
        _fenced_update(_PROJECT, _STEP, (_GENERATION, _ATTEMPT), Phase.FINISHED).where(go)
        .values(status=func.coalesce(status, S.c.status),
                result=case((status.in_(DONE_STEP_STATUSES), _bound("result", S.c.result)),
                            else_=S.c.result),
                error_message=closing["error_message"], error_details=closing["error_details"],
                completed_at=_NOW, generation=_GENERATION, attempt=_ATTEMPT, phase=Phase.FINISHED)
        .add_cte(closed)
    )


def _step_values(steps: Sequence[str]) -> dict[str, Any]:
    """The values of ``_new_step_rows``' parameters (for ``_params``)."""
    return dict(steps=list(steps), run_kinds=[RUN_KIND_OF_STEP[s] for s in steps])


def _new_step_rows(projects: Any, now: Any) -> Any:
    """INSERT of a pending row for each step in the array parameter ``steps`` (with the array
    ``run_kinds``, pairwise) of each project in ``projects`` (a CTE with an ``id``); rows that
    exist are left alone."""
    names = func.unnest(
        _bound("steps", S.c.step_name, array=True), _bound("run_kinds", S.c.run_kind, array=True)
    ).table_valued("step_name", "run_kind").render_derived(name="run_steps")
    return (
        insert(S).from_select(
            ["id", "project_id", "step_name", "status", "retry_count", "created_at", "run_kind"],
            select(func.gen_random_uuid(), projects.c.id, names.c.step_name,
                   literal(StepStatus.PENDING, S.c.status.type), literal(0), now, names.c.run_kind)
            .select_from(projects).join(names, true()),
        )
        .on_conflict_do_nothing(index_elements=[S.c.project_id, S.c.step_name])
    )


def _begin_run_statement() -> Select[Any]:
    """Parameters: ``project_id``, ``status``, ``seq``, ``now`` and ``_step_values``. Returns the
    number of projects found (0 or 1)."""
    project_id, status, seq, now = (
        _bound("project_id", P.c.id), _bound("status", P.c.status), _bound("seq", P.c.status_seq),
        _bound("now", P.c.updated_at),
    )
    project = select(P.c.id).where(P.c.id == project_id).cte("project")
    new_steps = _new_step_rows(project, now).cte("new_steps")
    run_status = _status_write(project_id, status, seq, now).cte("run_status")
    return select(func.count()).select_from(project).add_cte(new_steps, run_status)


def _admit_uncapped_statement() -> Select[Any]:
    """Parameters: ``project_id``, ``now``. Whether the tenant is let in, letting it in if it is
    still ``pending``: with no cap, the one condition. (The snapshot's ``admitted_at`` is the one
    before the UPDATE.)"""
    project_id, now = _bound("project_id", P.c.id), _bound("now", P.c.admitted_at)
    admitted = (
        update(P).where(P.c.id == project_id, P.c.admitted_at.is_(None), P.c.status == ProjectStatus.PENDING)
        .values(admitted_at=now).returning(P.c.id).cte("admitted")
    )
    before = select(P.c.admitted_at).where(P.c.id == project_id).scalar_subquery()
    return select(or_(before.is_not(None), select(admitted).exists()))


_ADMIT_UNCAPPED = _admit_uncapped_statement()
_BEGIN_RUN = _begin_run_statement()
_ATTEMPT_STARTED = _attempt_started_statement()
_ATTEMPT_FINISHED = _attempt_finished_statement()


# What the mirror being unreachable looks like: SQLAlchemy's wrappers (the engine), psycopg's own
# errors (the status reads' pool; psycopg_pool's PoolTimeout is an OperationalError), the socket's.
_OUTAGES = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
            psycopg.OperationalError, psycopg.InterfaceError, OSError)


@contextlib.contextmanager
def translate_outage() -> Iterator[None]:
    """The mirror's one error boundary: the mirror database being unreachable is an outage
    (``MirrorUnavailable``, retryable); anything else (a constraint, a bug) propagates as is."""
    try:
        yield
    except _OUTAGES as exc:
        raise MirrorUnavailable(
            f"the mirror database is unreachable ({type(exc).__name__})",
            details={"cause": type(exc).__name__},
        ) from exc
