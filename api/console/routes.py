"""The console's routes: login and logout, the tenants list, a tenant's page with its live timeline,
and the Create / Retry / Cancel / Delete forms.

Pages are rendered on the server (Jinja2, autoescaped); a form's POST answers with a 303 to a page
that shows what happened once (a flash), so reloading never repeats an action. Actions call the
API's own service functions (``api.provisioning``), never the API over HTTP, and report refusals
with the message ``api.errors`` gives the API's clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Form, Header, HTTPException, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api import errors
from api.console import views
from api.console.auth import (
    FAILED_LOGIN_DELAY,
    FLASH_COOKIE,
    FlashKind,
    Forbidden,
    FormSessionDep,
    FragmentSessionDep,
    LoginRequired,
    MaybeSessionDep,
    PageSessionDep,
    Session,
    check_origin,
    clear_flash,
    clear_session_cookie,
    new_session,
    password_ok,
    set_flash,
    set_session_cookie,
    take_flash,
)
from api.deps import EventHubDep, SettingsDep, StoreDep, TemporalDep
from api.events import event_stream_response, project_events
from api.pagination import decode_cursor, encode_cursor
from api.provisioning import create_tenant, deprovision, retry_failed_step
from api.schemas import ProjectCreate
from tenantflow.catalog import ProjectKind, ProjectStatus, RunKind
from tenantflow.models import Project
from tenantflow.settings import Settings
from tenantflow.store import ProjectQuery, Store

HERE = FilePath(__file__).resolve().parent
PAGE_SIZE = 50
MAX_EVENT_ID = 2**63 - 1
# Every console response: never cached, never framed, scripts and styles from this app only.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# What an action may raise that has an answer for people: the API's HTTP errors and every error
# ``api.errors`` maps (Temporal refusals, an unreachable mirror, a name ``ProjectCreate`` refuses...).
ACTION_ERRORS: tuple[type[Exception], ...] = (HTTPException, *errors.HANDLED)

templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
))
templates.env.filters.update(
    duration=views.duration, timestamp=views.timestamp, pretty_json=views.pretty_json,
    compact_json=views.compact_json,
)
templates.env.globals.update(span=views.span)

router = APIRouter(prefix="/console", include_in_schema=False)


class TenantNotFound(Exception):
    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref


async def tenant_by_ref(
    ref: Annotated[str, Path(min_length=1, max_length=100)], store: StoreDep
) -> Project:
    """The tenant ``{ref}`` names (an id or a name, as in the API).

    Raises:
        TenantNotFound: none has this id or name (a 404 page).
    """
    project = await store.get_project_by_ref(ref)
    if project is None:
        raise TenantNotFound(ref)
    return project


TenantDep = Annotated[Project, Depends(tenant_by_ref)]


# ------------------------------------------------------------------------------------- responses
def page(
    request: Request, settings: Settings, template: str, context: dict[str, Any], *,
    session: Session | None, status_code: int = 200,
) -> HTMLResponse:
    """A whole page, with the flash waiting for it (shown once)."""
    flash = take_flash(request, settings)
    response = templates.TemplateResponse(
        request, template, {"session": session, "flash": flash, **context},
        status_code=status_code, headers=SECURITY_HEADERS,
    )
    if FLASH_COOKIE in request.cookies:
        clear_flash(response, request)
    return response


def fragment(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    """A part of a page the page's script swaps in (no layout, no flash)."""
    return templates.TemplateResponse(request, template, context, headers=SECURITY_HEADERS)


def redirect(
    request: Request, settings: Settings, url: str, flash: tuple[FlashKind, str] | None = None
) -> RedirectResponse:
    """303 to ``url`` (a GET), with a message for the page there."""
    response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
    if flash is not None:
        set_flash(response, request, settings, *flash)
    return response


def error_text(exc: Exception) -> str:
    """What the API would answer for ``exc`` (its ``detail``), as one line."""
    if isinstance(exc, HTTPException):
        detail: Any = exc.detail
    else:
        _, detail = errors.to_http(exc)
    if isinstance(detail, list):  # validation errors
        return "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in detail)
    return str(detail)


def tenant_url(project: Project) -> str:
    return f"{router.prefix}/tenants/{project.id}"


def back(request: Request, settings: Settings, project: Project, kind: FlashKind, text: str) -> Response:
    """303 to the tenant's page, saying what the action did (or why not)."""
    return redirect(request, settings, tenant_url(project), (kind, text))


# ----------------------------------------------------------------------------------------- login
@router.get("/login")
async def login_page(request: Request, settings: SettingsDep, session: MaybeSessionDep) -> Response:
    if session is not None:
        return redirect(request, settings, router.prefix)
    return page(request, settings, "login.html", {"error": None}, session=None)


@router.post("/login")
async def login(
    request: Request, settings: SettingsDep, password: Annotated[str, Form()] = ""
) -> Response:
    """Log in with the API token or the console password (in the form body, never the URL)."""
    check_origin(request)
    if not password_ok(settings, password):
        await asyncio.sleep(FAILED_LOGIN_DELAY)
        return page(request, settings, "login.html",
                    {"error": "That is neither the API token nor the console password."},
                    session=None, status_code=401)
    value, session = new_session(settings)
    response = redirect(request, settings, router.prefix)
    set_session_cookie(response, request, value, session)
    return response


@router.post("/logout")
async def logout(request: Request, settings: SettingsDep, session: FormSessionDep) -> Response:
    response = redirect(request, settings, f"{router.prefix}/login", ("ok", "Logged out."))
    clear_session_cookie(response, request)
    return response


# ------------------------------------------------------------------------------------ the list
def list_query(status: str, kind: str, name: str, cursor: str) -> ProjectQuery:
    """The filters of the list's GET form as a store query (empty fields filter nothing).

    Raises:
        ValueError: a value the form cannot have sent (the message says which).
    """
    if status and status not in set(ProjectStatus):
        raise ValueError(f"unknown status {status!r}")
    if kind and kind not in set(ProjectKind):
        raise ValueError(f"unknown kind {kind!r}")
    if len(name) > 63:
        raise ValueError("a name prefix has at most 63 characters")
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise ValueError(f"malformed page cursor ({exc})") from None
    return ProjectQuery(
        limit=PAGE_SIZE, after=after, status=ProjectStatus(status) if status else None,
        kind=ProjectKind(kind) if kind else None, name_prefix=name or None,
    )


async def list_context(store: Store, filters: dict[str, str], query: ProjectQuery | None) -> dict[str, Any]:
    counts = views.Counts(await store.count_by_status())
    rows: Sequence[views.TenantRow] = []
    next_url = None
    if query is not None:
        found = await store.list_projects_newest_first(query)
        summaries = await store.step_summaries([p.id for p in found.projects])
        rows = views.tenant_rows(found.projects, summaries)
        if found.next_after is not None:
            wanted = {k: v for k, v in filters.items() if v}
            next_url = f"{router.prefix}?{urlencode({**wanted, 'cursor': encode_cursor(found.next_after)})}"
    return {"counts": counts, "rows": rows, "filters": filters, "next_url": next_url,
            "paged": query is not None and query.after is not None,
            "statuses": list(ProjectStatus), "kinds": list(ProjectKind)}


@router.get("")
async def tenants(
    request: Request, session: PageSessionDep, settings: SettingsDep, store: StoreDep,
    status: str = "", kind: str = "", name: str = "", cursor: str = "",
) -> Response:
    """Counts per status, the create form, the filters, and one page of tenants (newest first)."""
    filters = {"status": status, "kind": kind, "name": name.strip()}
    try:
        query: ProjectQuery | None = list_query(status, kind, filters["name"], cursor)
        problem = None
    except ValueError as exc:
        query, problem = None, str(exc)
    context = await list_context(store, filters, query)
    return page(request, settings, "list.html", {**context, "problem": problem},
                session=session, status_code=400 if problem else 200)


@router.post("/tenants")
async def create(
    request: Request, session: FormSessionDep, settings: SettingsDep, store: StoreDep,
    temporal: TemporalDep, name: Annotated[str, Form()] = "",
) -> Response:
    """Create a project tenant and open its page (an existing one of that name is opened instead)."""
    try:
        wanted = ProjectCreate(name=name.strip()).name
        created = await create_tenant(store, temporal, settings, name=wanted, kind=ProjectKind.PROJECT)
    except ACTION_ERRORS as exc:
        return redirect(request, settings, router.prefix, ("error", f"Not created: {error_text(exc)}"))
    project = created.project
    said = (f"Created {project.name}: provisioning has started." if created.created
            else f"{project.name} exists already (status {project.status}).")
    return back(request, settings, project, "ok", said)


# ------------------------------------------------------------------------------ a tenant's page
async def tenant_context(
    settings: Settings, store: Store, project: Project, *, timeline: bool
) -> dict[str, Any]:
    rows = await store.get_steps(project.id)
    summary = (await store.step_summaries([project.id])).get(project.id)
    context: dict[str, Any] = {"header": views.Header.of(settings, project, rows, summary)}
    if timeline:
        attempts = await store.get_attempts(project.id)
        context["runs"] = views.timeline(settings, project, rows, attempts)
    return context


@router.get("/tenants/{ref}")
async def tenant_page(
    request: Request, session: PageSessionDep, project: TenantDep, settings: SettingsDep, store: StoreDep
) -> Response:
    """Header, buttons and the step timeline; live (Server-Sent Events) while a run is in flight."""
    context = await tenant_context(settings, store, project, timeline=True)
    context["base_url"] = tenant_url(project)
    return page(request, settings, "tenant.html", context, session=session)


@router.get("/tenants/{ref}/timeline")
async def timeline_fragment(
    request: Request, session: FragmentSessionDep, project: TenantDep, settings: SettingsDep, store: StoreDep
) -> Response:
    context = await tenant_context(settings, store, project, timeline=True)
    return fragment(request, "_timeline.html", context)


@router.get("/tenants/{ref}/header")
async def header_fragment(
    request: Request, session: FragmentSessionDep, project: TenantDep, settings: SettingsDep, store: StoreDep
) -> Response:
    context = await tenant_context(settings, store, project, timeline=False)
    return fragment(request, "_header.html", {**context, "session": session})


@router.get("/tenants/{ref}/events")
async def events(
    session: FragmentSessionDep, project: TenantDep, store: StoreDep, hub: EventHubDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID)] = None,
) -> Response:
    """The tenant's events, as ``GET /v1/projects/{ref}/events`` sends them, for the page's
    ``EventSource`` (which has the login cookie, not the API token)."""
    return event_stream_response(project_events(hub, store, project.id, after=last_event_id or 0))


# --------------------------------------------------------------------------------------- actions
@router.post("/tenants/{ref}/retry")
async def retry(
    request: Request, session: FormSessionDep, project: TenantDep, settings: SettingsDep,
    store: StoreDep, temporal: TemporalDep,
) -> Response:
    """Resume the run that waits on a failed step (the teardown's, if that is the one waiting)."""
    waiting = views.Actions.of(project, await store.get_steps(project.id)).retry
    try:
        result = await retry_failed_step(temporal, project, requested_by="console", reason="console retry",
                                         run_kind=waiting or RunKind.PROVISION)
    except ACTION_ERRORS as exc:
        return back(request, settings, project, "error", f"Retry refused: {error_text(exc)}")
    return back(request, settings, project, "ok",
                f"Retrying {result.step_name}: the run resumes from that step.")


@router.post("/tenants/{ref}/cancel")
async def cancel(
    request: Request, session: FormSessionDep, project: TenantDep, settings: SettingsDep,
    store: StoreDep, temporal: TemporalDep,
) -> Response:
    """Stop a provisioning that has not finished and remove what it made (as the API's cancel)."""
    if project.status in (ProjectStatus.ONLINE, ProjectStatus.DELETED):
        hint = "; Delete removes it" if project.status == ProjectStatus.ONLINE else ""
        said = f"Nothing to cancel: the tenant is {project.status}{hint}."
        return back(request, settings, project, "error", said)
    try:
        await deprovision(store, temporal, settings, project)
    except ACTION_ERRORS as exc:
        return back(request, settings, project, "error", f"Cancel failed: {error_text(exc)}")
    return back(request, settings, project, "ok", "Cancelled: what the provisioning made is being removed.")


@router.get("/tenants/{ref}/delete")
async def delete_page(
    request: Request, session: PageSessionDep, project: TenantDep, settings: SettingsDep
) -> Response:
    """The confirmation: the tenant's name must be typed to delete it."""
    return page(request, settings, "delete.html", {"project": project, "error": None}, session=session)


@router.post("/tenants/{ref}/delete")
async def delete(
    request: Request, session: FormSessionDep, project: TenantDep, settings: SettingsDep,
    store: StoreDep, temporal: TemporalDep, confirm_name: Annotated[str, Form()] = "",
) -> Response:
    """Deprovision the tenant, once its name was typed (as the API's DELETE)."""
    if confirm_name.strip() != project.name:
        error = f"The name typed does not match: type {project.name} to delete this tenant."
        return page(request, settings, "delete.html", {"project": project, "error": error},
                    session=session, status_code=400)
    if project.status == ProjectStatus.DELETED:
        return back(request, settings, project, "ok", f"{project.name} is deleted already.")
    try:
        await deprovision(store, temporal, settings, project)
    except ACTION_ERRORS as exc:
        return back(request, settings, project, "error", f"Delete failed: {error_text(exc)}")
    return back(request, settings, project, "ok",
                f"Deleting {project.name}: its resources are being removed, newest first.")


# ---------------------------------------------------------------------------------- installation
async def _to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse(f"{router.prefix}/login", status_code=303, headers=SECURITY_HEADERS)


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Forbidden)
    return templates.TemplateResponse(
        request, "error.html", {"session": None, "flash": None, "title": "Forbidden", "message": exc.message},
        status_code=403, headers=SECURITY_HEADERS,
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TenantNotFound)
    return templates.TemplateResponse(
        request, "error.html",
        {"session": None, "flash": None, "title": "Not found",
         "message": f"No tenant has the id or name {exc.ref!r}."},
        status_code=404, headers=SECURITY_HEADERS,
    )


async def _home() -> RedirectResponse:
    return RedirectResponse(router.prefix, status_code=303)


def install(app: FastAPI) -> None:
    """Serve the console on ``app``: its routes, its static files, ``/`` → ``/console``, and the
    answers to its own exceptions (a login redirect, a 403 page, a 404 page)."""
    app.include_router(router)
    app.mount(f"{router.prefix}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_api_route("/", _home, include_in_schema=False)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(TenantNotFound, _not_found)
