"""Creating a tenant and making sure its provisioning run exists, resuming a failed run, and
taking a tenant down: shared by the project API, the signup webhook and the console, so all get
the same idempotency and the same answers.

``Store.create_project`` returns the existing row for a repeated name / idempotency key / user;
``ensure_run`` then starts the run or attaches to it (``tenantflow.temporal.start_provisioning``
uses the USE_EXISTING conflict policy), which also heals a request that crashed between the insert
and the start.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta

from fastapi import HTTPException, status
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from tenantflow.catalog import (
    RETRY_UPDATE,
    STATUS_SEQ_BASE,
    STEPS_BY_KIND,
    ProjectStatus,
    RunKind,
    StepStatus,
)
from tenantflow.contracts import RetryRequest, RetryResult
from tenantflow.models import Project, ProvisioningStep
from tenantflow.settings import Settings
from tenantflow.store import Created, Store, deprovision_workflow_id
from tenantflow.temporal import start_deprovisioning, start_provisioning

# How long a retry waits for the workflow to take the update (a worker must be polling).
RETRY_UPDATE_TIMEOUT = timedelta(seconds=30)


async def create_tenant(
    store: Store,
    client: Client,
    settings: Settings,
    *,
    name: str,
    kind: str,
    idempotency_key: str | None = None,
    external_user_id: uuid.UUID | None = None,
    created_by_key: uuid.UUID | None = None,
) -> Created:
    """Create the tenant (or find the one this request repeats) and make sure its run exists.

    Raises:
        HTTPException: 409 when the name, key or user already belongs to a different tenant.
    """
    created = await store.create_project(
        name=name, kind=kind, steps=STEPS_BY_KIND[kind], idempotency_key=idempotency_key,
        external_user_id=external_user_id, fields={"created_by_key": created_by_key},
    )
    if not created.created:
        _check_repeat(created.project, name=name, kind=kind, external_user_id=external_user_id)
    await ensure_run(store, client, settings, created.project)
    return created


def _check_repeat(existing: Project, *, name: str, kind: str, external_user_id: uuid.UUID | None) -> None:
    """A found row must be the tenant the request asked for, not one that merely shares a key."""
    if existing.name != name:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"this Idempotency-Key was already used to create project {existing.name!r}; "
            "use a new key for a different project",
        )
    if existing.kind != kind or existing.external_user_id != external_user_id:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the name {name!r} is taken by another tenant")
    if existing.status == ProjectStatus.DEPROVISIONING:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"the tenant {name!r} is being deleted; its name is free again once it is 'deleted'",
        )


async def ensure_run(store: Store, client: Client, settings: Settings, project: Project) -> None:
    """Start the project's provisioning run unless it exists (a finished run counts as existing),
    if admission lets it in; else the tenant stays ``pending`` until a worker lets it in, oldest
    first, as runs end (``tenantflow.admission``)."""
    if not await store.admit(project.id, cap=settings.max_runs_in_flight):
        return
    try:
        await start_provisioning(client, settings, project)
    except WorkflowAlreadyStartedError:
        # Running runs are attached to (USE_EXISTING); this is only raised for a closed run,
        # which the reuse policy rightly refuses to start again.
        pass


def waiting_run(steps: Iterable[ProvisioningStep]) -> RunKind:
    """The run that waits on a failed step: the teardown's once one of its steps has failed (the
    provisioning run ended when the deletion began), else the provisioning run."""
    failed_teardown = any(s.run_kind == RunKind.DEPROVISION and s.status == StepStatus.FAILED for s in steps)
    return RunKind.DEPROVISION if failed_teardown else RunKind.PROVISION


async def retry_failed_step(
    client: Client,
    project: Project,
    *,
    requested_by: str,
    reason: str = "",
    run_kind: RunKind = RunKind.PROVISION,
) -> RetryResult:
    """Resume the tenant's ``run_kind`` run from its failed step (the workflow update
    ``retry_failed_step``); returns once the step is pending again.

    Raises:
        WorkflowUpdateFailedError: the run refused (nothing has failed, a retry is under way).
        RPCError: the run is not running any more (NOT_FOUND), or Temporal is unreachable.
    """
    workflow_id = (project.workflow_id if run_kind == RunKind.PROVISION
                   else deprovision_workflow_id(project.id, project.kind, project.name))
    return await client.get_workflow_handle(workflow_id).execute_update(
        RETRY_UPDATE,
        RetryRequest(reason=reason, requested_by=requested_by),
        result_type=RetryResult,
        rpc_timeout=RETRY_UPDATE_TIMEOUT,
    )


async def deprovision(store: Store, client: Client, settings: Settings, project: Project) -> Project:
    """Start taking the tenant down (its provisioning run, if still going, is cancelled by the
    deprovisioning run's first step). Idempotent: a repeat attaches to the same run, a deleted
    tenant is returned as it is.

    The status turns ``deprovisioning`` before the run starts, so a repeated create of the same
    name is refused at once; the write is fenced at the deprovisioning run's base, so no late write
    of the provisioning run can turn it back.
    """
    if project.status == ProjectStatus.DELETED:
        return project
    await store.set_project_status(
        project.id, ProjectStatus.DEPROVISIONING, seq=STATUS_SEQ_BASE[RunKind.DEPROVISION]
    )
    await start_deprovisioning(client, settings, project)
    return await store.get_project(project.id) or project
