"""``/v1/projects``: create a project tenant, read its status and steps, retry its failed step."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Response, status

from api.deps import RequireApiToken, SettingsDep, StoreDep, TemporalDep
from api.provisioning import create_tenant, deprovision
from api.schemas import (
    ProjectCreate,
    ProjectDetail,
    ProjectPage,
    ProjectSummary,
    RetryAccepted,
    RetryCreate,
    StepOut,
    StepsOut,
)
from tenantflow.catalog import RETRY_UPDATE
from tenantflow.contracts import RetryRequest, RetryResult
from tenantflow.models import Project, ProjectKind, ProjectStatus
from tenantflow.store import Store

router = APIRouter(prefix="/v1/projects", tags=["projects"], dependencies=[RequireApiToken])

# How long a retry waits for the workflow to take the update (a worker must be polling).
RETRY_UPDATE_TIMEOUT = timedelta(seconds=30)
# Idempotency keys live in one column with the webhook's ("user:<id>"): give clients their own space.
CLIENT_KEY_PREFIX = "project:"

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No project with this id."}}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ProjectDetail,
    responses={
        200: {"model": ProjectDetail, "description": "The project already existed (same name or key)."},
        409: {"description": "The Idempotency-Key was used for another project."},
    },
)
async def create_project(
    body: ProjectCreate,
    response: Response,
    store: StoreDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="A repeat with the same key gets the same project."),
    ] = None,
) -> ProjectDetail:
    """Create a project tenant and start provisioning it (202); a repeat returns it (200)."""
    created = await create_tenant(
        store, temporal, settings, name=body.name, kind=ProjectKind.PROJECT,
        idempotency_key=CLIENT_KEY_PREFIX + idempotency_key if idempotency_key else None,
    )
    project = created.project
    if not created.created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"{router.prefix}/{project.id}"
    return ProjectDetail.from_rows(project, await store.get_steps(project.id))


@router.get("", response_model=ProjectPage)
async def list_projects(
    store: StoreDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, description="At most TENANTFLOW_API_PAGE_SIZE_MAX.")] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
    kind: ProjectKind | None = None,
) -> ProjectPage:
    """Tenants, oldest first, one page at a time; ``total`` counts all of them."""
    if limit > settings.api_page_size_max:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"limit must be at most {settings.api_page_size_max}"
        )
    projects, total = await store.list_projects(limit=limit, offset=offset, kind=kind)
    return ProjectPage(
        items=[ProjectSummary.from_project(p) for p in projects], total=total, limit=limit, offset=offset
    )


@router.get("/{project_id}", response_model=ProjectDetail, responses=_NOT_FOUND)
async def get_project(project_id: uuid.UUID, store: StoreDep) -> ProjectDetail:
    """Status, steps in provisioning order, and graph connection info (never a password)."""
    project = await _get_or_404(store, project_id)
    return ProjectDetail.from_rows(project, await store.get_steps(project_id))


@router.get("/{project_id}/steps", response_model=StepsOut, responses=_NOT_FOUND)
async def get_steps(project_id: uuid.UUID, store: StoreDep) -> StepsOut:
    """The provisioning steps in the order they run: status, result, the last error, and every
    attempt (``attempts``, oldest first) so the whole story of a step is there."""
    project = await _get_or_404(store, project_id)
    rows, attempts = await store.get_steps(project_id), await store.get_attempts(project_id)
    steps = StepOut.from_rows(project.kind, rows, attempts)
    return StepsOut(project_id=project.id, status=project.status, steps=steps)


@router.post(
    "/{project_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetryAccepted,
    responses={
        **_NOT_FOUND,
        409: {"description": "Nothing to retry: no step has failed, a retry is under way, or the run ended."},
    },
)
async def retry_project(
    project_id: uuid.UUID, store: StoreDep, temporal: TemporalDep, body: RetryCreate | None = None
) -> RetryAccepted:
    """Resume the run from its failed step (the workflow update ``retry_failed_step``)."""
    project = await _get_or_404(store, project_id)
    handle = temporal.get_workflow_handle(project.workflow_id)
    result = await handle.execute_update(
        RETRY_UPDATE,
        RetryRequest(reason=body.reason if body else "", requested_by="api"),
        result_type=RetryResult,
        rpc_timeout=RETRY_UPDATE_TIMEOUT,
    )
    return RetryAccepted(retrying_step=result.step_name)


@router.delete(
    "/{ref}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ProjectDetail,
    responses={**_NOT_FOUND, 200: {"model": ProjectDetail, "description": "The tenant is deleted already."}},
)
async def delete_project(
    ref: str, response: Response, store: StoreDep, temporal: TemporalDep, settings: SettingsDep
) -> ProjectDetail:
    """Deprovision the tenant (``ref``: id or name) in any state: ``deprovisioning`` → ``deleted``.
    A provisioning run still going is cancelled first; every resource is removed in reverse order;
    the row and its steps stay for audit and the name is free again. Repeats are harmless."""
    project = await _by_ref_or_404(store, ref)
    if project.status == ProjectStatus.DELETED:
        response.status_code = status.HTTP_200_OK
    else:
        project = await deprovision(store, temporal, settings, project)
    return ProjectDetail.from_rows(project, await store.get_steps(project.id))


@router.post(
    "/{ref}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ProjectDetail,
    responses={**_NOT_FOUND, 409: {"description": "The tenant is online (use DELETE) or already gone."}},
)
async def cancel_project(
    ref: str, store: StoreDep, temporal: TemporalDep, settings: SettingsDep
) -> ProjectDetail:
    """Stop a provisioning that has not finished and remove what it made: the same deprovisioning
    as ``DELETE``, refused for a tenant that is already ``online`` (that takes a DELETE)."""
    project = await _by_ref_or_404(store, ref)
    if project.status in (ProjectStatus.ONLINE, ProjectStatus.DELETED):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"nothing to cancel: the tenant is {project.status}"
            + ("; DELETE /v1/projects/{ref} removes it" if project.status == ProjectStatus.ONLINE else ""),
        )
    project = await deprovision(store, temporal, settings, project)
    return ProjectDetail.from_rows(project, await store.get_steps(project.id))


async def _by_ref_or_404(store: Store, ref: str) -> Project:
    project = await store.get_project_by_ref(ref)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no project with id or name {ref!r}")
    return project


async def _get_or_404(store: Store, project_id: uuid.UUID) -> Project:
    project = await store.get_project(project_id)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no project with id {project_id}")
    return project
