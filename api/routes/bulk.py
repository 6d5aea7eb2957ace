"""``/v1/projects/retry-failed``: resume every run waiting on a failed step that matches a filter,
after the cause (an outage, a quota) is fixed. A dry run only counts; a real one starts a
``RetryFailedWorkflow`` that resumes them in batches (``bulk_retry_batch_size`` runs, then
``bulk_retry_pause_seconds``), and whose progress this router reports.

Registered before the projects router: ``retry-failed`` is a reserved name, never a project's.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import RequireRead, RequireWrite, SettingsDep, StoreDep, TemporalDep
from tenantflow.catalog import PROGRESS_QUERY, ProjectKind, StepName, WorkflowName
from tenantflow.contracts import RetryFailedInput, RetryFailedProgress, TenantFilter

router = APIRouter(prefix="/v1/projects/retry-failed", tags=["projects"], dependencies=[RequireRead])

OPERATION_PREFIX = "retry-failed-"
DRY_RUN_LISTED = 100  # tenants named in a dry run's answer


class RetryFailedCreate(BaseModel):
    """Body of ``POST /v1/projects/retry-failed``: which waiting runs to resume."""

    model_config = ConfigDict(extra="forbid")

    failed_step: StepName | None = Field(default=None, description="Only runs waiting on this step.")
    kind: ProjectKind | None = None
    name_prefix: str | None = Field(default=None, min_length=1, max_length=63)
    dry_run: bool = Field(default=False, description="Only count (and name) the runs that match.")
    reason: str = Field(default="", max_length=500)


class RetryFailedOut(BaseModel):
    matched: int = Field(description="Runs waiting on a failed step that match the filter.")
    dry_run: bool
    tenants: list[str] = Field(description=f"The first {DRY_RUN_LISTED} matching tenants' names.")
    operation_id: str | None = Field(description="The bulk retry's id (None for a dry run).")


class RetryFailedStatus(BaseModel):
    operation_id: str
    matched: int
    retried: int = Field(description="Runs sent the retry signal so far.")
    not_waiting: list[str] = Field(description="Tenants whose run had ended by the time of its batch.")
    batches_done: int
    done: bool


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RetryFailedOut,
             dependencies=[RequireWrite],
             responses={200: {"model": RetryFailedOut, "description": "A dry run: nothing was retried."}})
async def retry_failed(
    response: Response, store: StoreDep, temporal: TemporalDep, settings: SettingsDep,
    body: Annotated[RetryFailedCreate, Body()],
) -> RetryFailedOut:
    """Resume every matching run waiting on a failed step, in batches (202), or count them (200)."""
    filter = TenantFilter(failed_step=body.failed_step, kind=body.kind, name_prefix=body.name_prefix)
    waiting = await store.waiting_runs(filter)
    names = [w.tenant_id for w in waiting[:DRY_RUN_LISTED]]
    if body.dry_run:
        response.status_code = status.HTTP_200_OK
        return RetryFailedOut(matched=len(waiting), dry_run=True, tenants=names, operation_id=None)
    operation_id = f"{OPERATION_PREFIX}{uuid.uuid4()}"
    await temporal.start_workflow(
        WorkflowName.RETRY_FAILED,
        RetryFailedInput(filter=filter, batch_size=settings.bulk_retry_batch_size,
                         pause_seconds=settings.bulk_retry_pause_seconds, reason=body.reason,
                         requested_by="api"),
        id=operation_id, task_queue=settings.task_queue,
        static_summary=f"retry {len(waiting)} failed runs",
    )
    return RetryFailedOut(matched=len(waiting), dry_run=False, tenants=names, operation_id=operation_id)


@router.get("/{operation_id}", response_model=RetryFailedStatus,
            responses={404: {"description": "No bulk retry with this id."}})
async def retry_failed_status(operation_id: str, temporal: TemporalDep) -> RetryFailedStatus:
    """How far a bulk retry has got."""
    if not operation_id.startswith(OPERATION_PREFIX):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no bulk retry with id {operation_id!r}")
    progress = await temporal.get_workflow_handle(operation_id).query(
        PROGRESS_QUERY, result_type=RetryFailedProgress
    )
    return RetryFailedStatus(operation_id=operation_id, **progress.__dict__)
