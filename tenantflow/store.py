"""Reads and writes of the mirror tables (``projects``, ``provisioning_steps``).

Shared by the API (creates projects, reads status) and the activities (mirror step status).
Every write is a single idempotent statement, so a retried activity can repeat it safely.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantflow.models import Project, ProjectStatus, ProvisioningStep, StepStatus, utcnow

P = Project.__table__  # type: ignore[attr-defined]
S = ProvisioningStep.__table__  # type: ignore[attr-defined]


def workflow_id_for(project_id: uuid.UUID, kind: str) -> str:
    """The business id of a provisioning run: one workflow per tenant."""
    return f"provision-{kind}-{project_id}"


def _pending_steps(project_id: uuid.UUID, steps: Sequence[str]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        dict(id=uuid.uuid4(), project_id=project_id, step_name=s, status=StepStatus.PENDING,
             retry_count=0, created_at=now)
        for s in steps
    ]


@dataclass
class Created:
    project: Project
    created: bool


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
            workflow_id=workflow_id_for(pid, kind), created_at=now, updated_at=now,
            **(fields or {}),
        )
        async with self.engine.begin() as conn:
            inserted = (
                await conn.execute(insert(P).values(**values).on_conflict_do_nothing().returning(P))
            ).mappings().first()
            if inserted is not None:
                await conn.execute(insert(S), _pending_steps(pid, steps))
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
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(P).where(or_(*conds)).limit(1))).mappings().first()
        return Project(**row) if row else None

    async def get_project(self, project_id: uuid.UUID) -> Project | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(P).where(P.c.id == project_id))).mappings().first()
        return Project(**row) if row else None

    async def get_user_project(self, user_id: uuid.UUID) -> Project | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(P).where(P.c.external_user_id == user_id))
            ).mappings().first()
        return Project(**row) if row else None

    async def list_projects(
        self, *, limit: int, offset: int, kind: str | None = None
    ) -> tuple[list[Project], int]:
        where = [P.c.kind == kind] if kind else []
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(P).where(*where))).scalar_one()
            rows = (
                await conn.execute(
                    select(P).where(*where).order_by(P.c.created_at, P.c.id).limit(limit).offset(offset)
                )
            ).mappings().all()
        return [Project(**r) for r in rows], int(total)

    async def update_project(self, project_id: uuid.UUID, **values: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(P).where(P.c.id == project_id).values(**values, updated_at=utcnow())
            )

    async def set_project_status(self, project_id: uuid.UUID, status: str) -> None:
        await self.update_project(project_id, status=status)

    # ------------------------------------------------------------------- steps
    async def get_steps(self, project_id: uuid.UUID) -> list[ProvisioningStep]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(S).where(S.c.project_id == project_id))
            ).mappings().all()
        return [ProvisioningStep(**r) for r in rows]

    async def ensure_steps(self, project_id: uuid.UUID, steps: Sequence[str]) -> None:
        """Create missing step rows as pending (rows that exist are left alone)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(S)
                .values(_pending_steps(project_id, steps))
                .on_conflict_do_nothing(index_elements=[S.c.project_id, S.c.step_name])
            )

    async def step_started(self, project_id: uuid.UUID, step: str, *, attempt: int) -> None:
        """An attempt begins: running, retry_count = attempt - 1; keeps the last error visible."""
        await self._upsert_step(
            project_id, step, status=StepStatus.RUNNING, started_at=utcnow(),
            completed_at=None, retry_count=attempt - 1,
        )

    async def step_finished(
        self,
        project_id: uuid.UUID,
        step: str,
        *,
        status: StepStatus,
        error_message: str | None = None,
        error_details: dict[str, Any] | None = None,
    ) -> None:
        await self._upsert_step(
            project_id, step, status=status, completed_at=utcnow(),
            error_message=error_message, error_details=error_details,
        )

    async def step_failed_by_workflow(
        self, project_id: uuid.UUID, step: str, message: str, details: dict[str, Any]
    ) -> None:
        """Final failure as the workflow saw it. Keeps the activity's own error if it wrote one
        (it knows more) and adds the workflow's view (e.g. ``retry_state``); fills both in when
        the activity could not (timeouts, crashed worker)."""
        already = S.c.status == StepStatus.FAILED
        seen = literal(details, JSONB)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(S)
                .where(and_(S.c.project_id == project_id, S.c.step_name == step))
                .values(
                    status=StepStatus.FAILED,
                    completed_at=func.coalesce(S.c.completed_at, utcnow()),
                    error_message=case((already, S.c.error_message), else_=message),
                    # jsonb || jsonb: keys of the right side win, so the activity's details stay.
                    error_details=case(
                        (already, seen.op("||")(case(
                            (func.jsonb_typeof(S.c.error_details) == "object", S.c.error_details),
                            else_=literal({}, JSONB),
                        ))),
                        else_=seen,
                    ),
                )
            )

    async def step_reset(self, project_id: uuid.UUID, step: str) -> None:
        """FAILED → PENDING when an operator asks for a retry; the last error stays for reference."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(S)
                .where(and_(S.c.project_id == project_id, S.c.step_name == step))
                .values(status=StepStatus.PENDING, started_at=None, completed_at=None)
            )

    async def _upsert_step(self, project_id: uuid.UUID, step: str, **values: Any) -> None:
        stmt = insert(S).values(
            id=uuid.uuid4(), project_id=project_id, step_name=step, created_at=utcnow(),
            **{"retry_count": 0, **values},
        )
        stmt = stmt.on_conflict_do_update(index_elements=[S.c.project_id, S.c.step_name], set_=values)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
