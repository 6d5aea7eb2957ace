"""``/v1/projects``: create a project tenant; find tenants; read one's status, steps and connection
details; retry its failed step. ``{ref}`` is a project's id or name (``ProjectByRefDep``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.sse import EventSourceResponse

from api.connection import connection_details
from api.deps import (
    ActorDep,
    AdmitCreateDep,
    ClientHostDep,
    CredentialsDep,
    CursorDep,
    EventHubDep,
    ProjectByRefDep,
    ReadPoolDep,
    RefPath,
    RequireAdmin,
    RequireRead,
    RequireWrite,
    SettingsDep,
    StoreDep,
    TemporalDep,
    no_such_project,
)
from api.documents import project_detail
from api.events import event_stream_response, project_events, wait_for_status
from api.provisioning import create_tenant, deprovision, retry_failed_step, waiting_run
from api.schemas import (
    ConnectionOut,
    ProjectCreate,
    ProjectDetail,
    ProjectPage,
    RetryAccepted,
    RetryCreate,
    StepOut,
    StepsOut,
)
from tenantflow.catalog import SETTLED_STATUSES, ProjectKind, ProjectStatus, StepName
from tenantflow.store import ProjectQuery

router = APIRouter(prefix="/v1/projects", tags=["projects"], dependencies=[RequireRead])

# Idempotency keys live in one column with the webhook's ("user:<id>"): give clients their own space.
CLIENT_KEY_PREFIX = "project:"

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No project with this id or name."}}
# Event ids are bigints; anything larger is not an id we made.
MAX_EVENT_ID = 2**63 - 1
LONG_POLL_MAX_SECONDS = 60


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
    caller: AdmitCreateDep,
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="A repeat with the same key gets the same project."),
    ] = None,
) -> ProjectDetail:
    """Create a project tenant and start provisioning it (202); a repeat returns it (200).

    Needs scope ``write``. A key may create ``api_key_creates_per_minute`` tenants a minute (429
    with ``Retry-After`` beyond) and hold ``api_key_max_tenants`` live ones (403 beyond)."""
    created = await create_tenant(
        store, temporal, settings, name=body.name, kind=ProjectKind.PROJECT,
        idempotency_key=CLIENT_KEY_PREFIX + idempotency_key if idempotency_key else None,
        created_by_key=caller.key_id,
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
    after: CursorDep,
    limit: Annotated[int, Query(ge=1, description="At most TENANTFLOW_API_PAGE_SIZE_MAX.")] = 20,
    status_: Annotated[ProjectStatus | None, Query(alias="status")] = None,
    kind: ProjectKind | None = None,
    name_prefix: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
    failed_step: Annotated[
        StepName | None, Query(description="Only tenants whose step of this name has failed.")
    ] = None,
) -> ProjectPage:
    """Tenants, oldest first, one page at a time: follow ``next_cursor`` until it is null."""
    if limit > settings.api_page_size_max:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"limit must be at most {settings.api_page_size_max}"
        )
    query = ProjectQuery(limit=limit, after=after, status=status_, kind=kind, name_prefix=name_prefix,
                         failed_step=failed_step)
    return ProjectPage.from_slice(await store.list_projects(query), limit=limit)


@router.get("/{ref}", response_model=ProjectDetail, responses=_NOT_FOUND)
async def get_project(
    ref: RefPath,
    reads: ReadPoolDep,
    store: StoreDep,
    hub: EventHubDep,
    wait_for: Annotated[
        ProjectStatus | None,
        Query(description="Long poll: answer once the status is this one or settled "
                          "(online, failed, deleted), or when `timeout` runs out."),
    ] = None,
    timeout: Annotated[
        float, Query(gt=0, le=LONG_POLL_MAX_SECONDS, description="Seconds a `wait_for` may wait.")
    ] = 30,
) -> Response:
    """Status, steps in catalog order, and graph connection info (never a password).

    With ``wait_for``, a long poll: the answer comes when the tenant reaches that status (or one it
    cannot leave without a person), or after ``timeout`` seconds with its state then; the client
    checks ``status``. A client that wants every step as it happens uses ``/events`` instead."""
    if wait_for is not None:
        project = await store.get_project_by_ref(ref)
        if project is None:
            raise no_such_project(ref)
        if project.status != wait_for and project.status not in SETTLED_STATUSES:
            await wait_for_status(hub, store, project, wait_for, timeout=timeout)
        ref = str(project.id)
    # Postgres writes the document (api.documents); it is sent as it is.
    document = await project_detail(reads, ref)
    if document is None:
        raise no_such_project(ref)
    return Response(document, media_type="application/json")


@router.get(
    "/{ref}/events",
    # The route returns its own streaming response (api.events): declared here for the OpenAPI.
    response_class=Response,
    responses={**_NOT_FOUND, 200: {
        "description": "Server-Sent Events: `step` and `status` events as they happen, then `end`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }},
)
async def get_events(
    project: ProjectByRefDep,
    store: StoreDep,
    hub: EventHubDep,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID,
               description="Resume after this event (browsers send it when they reconnect)."),
    ] = None,
    after: Annotated[
        int | None,
        Query(alias="last_event_id", ge=0, le=MAX_EVENT_ID,
              description="The same as the Last-Event-ID header, for clients that cannot set one."),
    ] = None,
) -> EventSourceResponse:
    """The tenant's step and status changes as they happen (Server-Sent Events).

    ``step`` events carry the step row (status, attempt, generation, retry count, times, last
    error), ``status`` events the tenant's status; each has an increasing ``id``. Without
    ``Last-Event-ID`` the stream replays the tenant's history from its first event. Once everything
    is sent and the tenant is settled (``online``, ``failed``, ``deleted``) an ``end`` event follows
    and the stream closes."""
    resume = last_event_id if last_event_id is not None else after
    return event_stream_response(project_events(hub, store, project.id, after=resume or 0))


@router.get("/{ref}/steps", response_model=StepsOut, responses=_NOT_FOUND)
async def get_steps(project: ProjectByRefDep, store: StoreDep) -> StepsOut:
    """The steps in the order they run (provisioning, then teardown): status, result, the last
    error, and every attempt (``attempts``, oldest first) so the whole story of a step is there."""
    rows, attempts = await store.get_steps(project.id), await store.get_attempts(project.id)
    steps = StepOut.from_rows(project.kind, rows, attempts)
    return StepsOut(project_id=project.id, status=project.status, steps=steps)


@router.get(
    "/{ref}/connection",
    response_model=ConnectionOut,
    dependencies=[RequireAdmin],
    responses={**_NOT_FOUND, 409: {"description": "The project is not online."}},
)
async def get_connection(
    project: ProjectByRefDep, response: Response, store: StoreDep, settings: SettingsDep,
    credentials: CredentialsDep, actor: ActorDep, client: ClientHostDep,
) -> ConnectionOut:
    """How to reach the tenant, passwords and API keys included; only while it is ``online``.
    Every read is recorded (who, from where, when) and the answer must not be cached."""
    details = await connection_details(project, settings=settings, credentials=credentials)
    await store.record_connection_read(project.id, actor=actor, client=client)
    response.headers["Cache-Control"] = "no-store"
    return details


@router.post(
    "/{ref}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[RequireWrite],
    response_model=RetryAccepted,
    responses={
        **_NOT_FOUND,
        409: {"description": "Nothing to retry: no step has failed, a retry is under way, or the run ended."},
    },
)
async def retry_project(
    project: ProjectByRefDep, temporal: TemporalDep, store: StoreDep, actor: ActorDep,
    body: RetryCreate | None = None,
) -> RetryAccepted:
    """Resume the run from its failed step (the workflow update ``retry_failed_step``): the
    teardown's if one of its steps is the one that failed, else the provisioning run."""
    reason = body.reason if body else ""
    result = await retry_failed_step(temporal, project, requested_by=actor, reason=reason,
                                     run_kind=waiting_run(await store.get_steps(project.id)))
    return RetryAccepted(retrying_step=result.step_name)


@router.delete(
    "/{ref}",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[RequireWrite],
    response_model=ProjectDetail,
    responses={**_NOT_FOUND, 200: {"model": ProjectDetail, "description": "The tenant is deleted already."}},
)
async def delete_project(
    project: ProjectByRefDep, response: Response, store: StoreDep, temporal: TemporalDep,
    settings: SettingsDep,
) -> ProjectDetail:
    """Deprovision the tenant (``ref``: id or name) in any state: ``deprovisioning`` → ``deleted``.
    A provisioning run still going is cancelled first; every resource is removed in reverse order;
    the row and its steps stay for audit and the name is free again. Repeats are harmless."""
    if project.status == ProjectStatus.DELETED:
        response.status_code = status.HTTP_200_OK
    else:
        project = await deprovision(store, temporal, settings, project)
    return ProjectDetail.from_rows(project, await store.get_steps(project.id))


@router.post(
    "/{ref}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[RequireWrite],
    response_model=ProjectDetail,
    responses={**_NOT_FOUND, 409: {"description": "The tenant is online (use DELETE) or already gone."}},
)
async def cancel_project(
    project: ProjectByRefDep, store: StoreDep, temporal: TemporalDep, settings: SettingsDep
) -> ProjectDetail:
    """Stop a provisioning that has not finished and remove what it made: the same deprovisioning
    as ``DELETE``, refused for a tenant that is already ``online`` (that takes a DELETE)."""
    if project.status in (ProjectStatus.ONLINE, ProjectStatus.DELETED):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"nothing to cancel: the tenant is {project.status}"
            + (f"; DELETE /v1/projects/{project.name} removes it"
               if project.status == ProjectStatus.ONLINE else ""),
        )
    project = await deprovision(store, temporal, settings, project)
    return ProjectDetail.from_rows(project, await store.get_steps(project.id))
