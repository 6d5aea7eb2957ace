"""What routes get injected: settings, the mirror store, the status reads' pool, the credential
store, the Temporal client, the event hub (push updates), the API key store; who is calling
(``PrincipalDep``: an API key or the settings' bootstrap token) and the scope checks
(``RequireRead`` / ``RequireWrite`` / ``RequireAdmin``); and what several routes resolve the same
way (a project from its ``{ref}``, a list's cursor, where the caller is).

The lifespan (``api.main``) puts the shared objects on ``app.state``; these dependencies hand them
to routes as ``Annotated`` types, so a route declares ``store: StoreDep`` and never builds one.
Every dependency is ``async def`` although none awaits: FastAPI runs a plain ``def`` dependency in
a worker thread, which cost the status read more than its query (measured: 20 thread hops a request).
"""

from __future__ import annotations

import hmac
import math
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from api.events import EventHub
from api.pagination import decode_cursor
from tenantflow.api_keys import BOOTSTRAP_NAME, ApiKeyStore, Principal
from tenantflow.catalog import Scope
from tenantflow.credentials import CredentialStore
from tenantflow.models import Project
from tenantflow.rate_budget import RateBudget
from tenantflow.read_pool import ReadPool
from tenantflow.settings import Settings
from tenantflow.store import Keyset, Store


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _store(request: Request) -> Store:
    return request.app.state.store


async def _temporal(request: Request) -> Client:
    return request.app.state.temporal


async def _credentials(request: Request) -> CredentialStore:
    return request.app.state.credentials


async def _events(request: Request) -> EventHub:
    return request.app.state.events


async def _api_keys(request: Request) -> ApiKeyStore:
    return request.app.state.api_keys


async def _reads(request: Request) -> ReadPool:
    return request.app.state.reads


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
TemporalDep = Annotated[Client, Depends(_temporal)]
CredentialsDep = Annotated[CredentialStore, Depends(_credentials)]
EventHubDep = Annotated[EventHub, Depends(_events)]
ApiKeysDep = Annotated[ApiKeyStore, Depends(_api_keys)]
ReadPoolDep = Annotated[ReadPool, Depends(_reads)]

# auto_error=False: a missing header gets our 401 (with WWW-Authenticate), not FastAPI's default.
_bearer = HTTPBearer(
    auto_error=False, description="An API key (tfk_...), or the bootstrap TENANTFLOW_API_TOKEN."
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(detail: str = "missing or invalid API key") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def principal(request: Request, credentials: BearerDep) -> Principal:
    """Who is calling: the settings' token (the bootstrap ``admin``) or an API key.

    Every authenticated request runs this, so it takes the settings and the key store from the
    app's state itself rather than as two more dependencies (FastAPI's solving of each costs
    more than the dependency's own work).

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when no valid key or token is given.
    """
    state = request.app.state
    return await authenticate(state.settings, state.api_keys, credentials)


async def authenticate(
    settings: Settings, keys: ApiKeyStore, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    """The principal of ``credentials``: the settings' token (the bootstrap ``admin``) or an API key.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when no valid key or token is given.
    """
    given = credentials.credentials if credentials else ""
    expected = settings.api_token.get_secret_value().encode()
    # compare_digest takes the same time wherever the first difference is; an unset token
    # (empty) never authenticates anybody.
    if expected and given and hmac.compare_digest(given.encode(), expected):
        return Principal(BOOTSTRAP_NAME, Scope.ADMIN)
    found = await keys.authenticate(given) if given else None
    if found is None:
        raise _unauthorized()
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


def require(scope: Scope) -> Any:
    """A dependency that lets the request through only for a caller with ``scope`` (or above)."""

    async def check(caller: PrincipalDep) -> Principal:
        if not caller.allows(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the key {caller.name!r} has scope '{caller.scope}'; this needs '{scope}'",
            )
        return caller

    return Depends(check)


async def admit_create(
    caller: PrincipalDep, keys: ApiKeysDep, store: StoreDep, settings: SettingsDep
) -> Principal:
    """A key that may create a tenant now: scope ``write``, under its cap of live tenants and its
    rate of creates (one budget per key in the mirror database, so every API process shares it).
    The bootstrap token is the operator's and has neither limit.

    Raises:
        HTTPException: 403 (scope, or the cap reached), 429 with ``Retry-After`` (the rate).
    """
    if not caller.allows(Scope.WRITE):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"the key {caller.name!r} has scope '{caller.scope}'; this needs 'write'")
    if caller.key_id is None:
        return caller
    cap = settings.api_key_max_tenants
    if cap and await keys.live_tenants(caller.key_id) >= cap:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"the key {caller.name!r} holds {cap} live tenants, its limit "
                            "(TENANTFLOW_API_KEY_MAX_TENANTS); delete some or use another key")
    budget = RateBudget(store.engine, f"creates:{caller.key_id}",
                        limit=settings.api_key_creates_per_minute, window_seconds=60.0, bursty=True)
    wait = await budget.try_acquire()
    if wait is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"the key {caller.name!r} may create {settings.api_key_creates_per_minute} "
                            "tenants a minute; try again later",
                            headers={"Retry-After": str(math.ceil(wait))})
    return caller


AdmitCreateDep = Annotated[Principal, Depends(admit_create)]
RequireRead = require(Scope.READ)
RequireWrite = require(Scope.WRITE)
RequireAdmin = require(Scope.ADMIN)


RefPath = Annotated[str, Path(min_length=1, max_length=100, description="The project's id or name.")]


def no_such_project(ref: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no project with id or name {ref!r}")


async def project_by_ref(ref: RefPath, store: StoreDep) -> Project:
    """The project ``{ref}`` names (an id, or a name: the live tenant holding it first).

    Raises:
        HTTPException: 404 when no project has this id or name.
    """
    project = await store.get_project_by_ref(ref)
    if project is None:
        raise no_such_project(ref)
    return project


ProjectByRefDep = Annotated[Project, Depends(project_by_ref)]


async def list_cursor(
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


async def _actor(caller: PrincipalDep) -> str:
    return caller.name


async def _client_host(request: Request) -> str | None:
    return request.client.host if request.client else None


ActorDep = Annotated[str, Depends(_actor)]
ClientHostDep = Annotated[str | None, Depends(_client_host)]
