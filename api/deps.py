"""What routes get injected: settings, the mirror store, the credential store, the Temporal client,
the event hub (push updates),
the API token check, and what several routes resolve the same way (a project from its ``{ref}``,
a list's cursor, who is asking and from where).

The lifespan (``api.main``) puts the shared objects on ``app.state``; these dependencies hand them
to routes as ``Annotated`` types, so a route declares ``store: StoreDep`` and never builds one.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.events import EventHub
from api.pagination import decode_cursor
from tenantflow.credentials import CredentialStore
from tenantflow.models import Project
from tenantflow.settings import Settings
from tenantflow.store import Keyset, Store

# Who reads, as recorded in the audit table. The API token is the one credential the API knows
# for now; per-client keys will name their holder instead.
API_TOKEN_ACTOR = "api-token"


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> Store:
    return request.app.state.store


def _temporal(request: Request) -> Client:
    return request.app.state.temporal


def _credentials(request: Request) -> CredentialStore:
    return request.app.state.credentials


def _events(request: Request) -> EventHub:
    return request.app.state.events


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
TemporalDep = Annotated[Client, Depends(_temporal)]
CredentialsDep = Annotated[CredentialStore, Depends(_credentials)]
EventHubDep = Annotated[EventHub, Depends(_events)]

# auto_error=False: a missing header gets our 401 (with WWW-Authenticate), not FastAPI's default.
_bearer = HTTPBearer(auto_error=False, description="The API token (TENANTFLOW_API_TOKEN).")


def require_api_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept the request only with ``Authorization: Bearer <settings.api_token>``.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when the token is missing or wrong.
    """
    expected = settings.api_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials else b""
    # compare_digest takes the same time wherever the first difference is; an unset token
    # (empty) never authenticates anybody.
    if not (expected and given and hmac.compare_digest(given, expected)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API token",
            headers={"WWW-Authenticate": "Bearer"},
        )


RequireApiToken = Depends(require_api_token)


async def project_by_ref(
    ref: Annotated[str, Path(min_length=1, max_length=100, description="The project's id or name.")],
    store: StoreDep,
) -> Project:
    """The project ``{ref}`` names (an id, or a name: the live tenant holding it first).

    Raises:
        HTTPException: 404 when no project has this id or name.
    """
    project = await store.get_project_by_ref(ref)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no project with id or name {ref!r}")
    return project


ProjectByRefDep = Annotated[Project, Depends(project_by_ref)]


def list_cursor(
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="``next_cursor`` of the previous page, unchanged (opaque)."),
    ] = None,
) -> Keyset | None:
    """Where a list's page starts; a cursor we did not make is a 422 like any invalid parameter."""
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except ValueError as exc:
        raise RequestValidationError([{
            "type": "value_error", "loc": ("query", "cursor"),
            "msg": f"malformed cursor ({exc}): pass the previous page's next_cursor unchanged",
        }]) from None


CursorDep = Annotated[Keyset | None, Depends(list_cursor)]


def _actor() -> str:
    return API_TOKEN_ACTOR


def _client_host(request: Request) -> str | None:
    return request.client.host if request.client else None


ActorDep = Annotated[str, Depends(_actor)]
ClientHostDep = Annotated[str | None, Depends(_client_host)]
