"""Clients for a tenant's graph database, and the one translation of graph-server errors.

Application code (API routes, services) asks for a tenant's graph with::

    async with graph_client_for(project_id, store=store, credentials=credentials) as graph:
        rows = await graph.run("MATCH (n:Person {name: $name}) RETURN n.name AS name", name="Ada")

The factory loads the tenant's row, refuses with ``NotReady`` until ``graph_status`` is
``online``, opens the tenant's graph password from the credential store and returns a client
with one small interface, ``run(cypher, **params) -> list[dict]``, over either transport:

* Bolt (``bolt://``, ``neo4j://``, ``+s`` variants): an ``neo4j.AsyncDriver`` bound to the
  tenant's database (self-managed Neo4j, ArcadeDB, Aura over Bolt);
* HTTPS: the Neo4j Query API v2, ``POST {uri}/db/{database}/query/v2`` with basic auth, for Aura
  and Neo4j 5 servers reached over HTTPS only (``graph_uri`` is ``https://``, or ``http=True``
  with a recorded ``graph_http_uri``).

Community fallback (``graph_mode == "community-fallback"``): a Neo4j Community server has one user
database and no privileges, so the tenant shares the default database with every other tenant,
through the server's admin credentials. Its nodes are told apart by a per-tenant label,
``TenantScope.label`` (```Tenant_<name>```, with ``-`` as ``_``), that the caller must put on every
node it creates or matches. The client rejects statements that do not mention that label. Be
honest about what this is: cooperative scoping that catches the common mistake (forgetting the
label), not a security boundary; a statement that mentions the label can still touch other
tenants' nodes elsewhere in it. Tenants that need isolation belong on Enterprise, Aura or ArcadeDB,
where each tenant has its own database.

Errors: driver and Query API errors become tenantflow errors here, in one place per transport
(``translate_neo4j_error`` for Bolt, ``_query_api_error`` for HTTPS), sharing one mapping of
Neo4j status codes (``error_for_code``). The admin side (``activities.graph.neo4j``,
``activities.graph.arcadedb``) runs its Cypher through ``run_cypher`` and so gets the same
translation.
"""

from __future__ import annotations

import contextlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, LiteralString, cast
from urllib.parse import quote

import httpx
import neo4j
import neo4j.exceptions as neo4j_exc

from tenantflow.catalog import GraphStatus
from tenantflow.credentials import CredentialKind, CredentialStore
from tenantflow.errors import (
    ConfigurationError,
    NotReady,
    PermanentError,
    ServiceUnavailable,
    TenantflowError,
)
from tenantflow.models import Project
from tenantflow.names import validate_neo4j_database_name, validate_project_name
from tenantflow.store import Store
from tenantflow.tls import shared_ssl_context

GRAPH_PASSWORD = CredentialKind.GRAPH_PASSWORD  # credential kind of a tenant's graph password
CONNECT_TIMEOUT_SECONDS = 10.0
QUERY_TIMEOUT_SECONDS = 30.0
UNSUPPORTED_ADMINISTRATION_COMMAND = "Neo.ClientError.Statement.UnsupportedAdministrationCommand"


class GraphMode(StrEnum):
    """How a tenant's graph is isolated (``projects.graph_mode``)."""

    DATABASE_PER_TENANT = "database-per-tenant"
    COMMUNITY_FALLBACK = "community-fallback"


# ------------------------------------------------------------------ error translation
def error_for_code(code: str, message: str) -> TenantflowError:
    """Our error for a Neo4j status code (``Neo.<Classification>.<Category>.<Title>``).

    Transient errors are retried; client and database errors are permanent, with the code in
    ``details`` so callers can branch on it (never on the message).
    """
    details = {"code": code}
    if code.startswith("Neo.TransientError."):
        return ServiceUnavailable(f"graph server busy ({code}): {message}", details=details)
    if code.startswith("Neo.ClientError.Security."):
        return ConfigurationError(f"graph server refused the credentials ({code}): {message}",
                                  details=details)
    return PermanentError(f"graph server refused the statement ({code}): {message}", details=details)


def translate_neo4j_error(exc: Exception) -> TenantflowError | None:
    """The one mapping of neo4j driver exceptions to ours; ``None`` for anything else.

    ``ServiceUnavailable`` / ``SessionExpired`` / pool exhaustion are outages (retried); server
    errors map by their code (``error_for_code``); a driver configuration error (bad URI scheme,
    bad TLS settings) is ours to fix.
    """
    if isinstance(exc, neo4j_exc.Neo4jError):
        return error_for_code(exc.code or "Neo.DatabaseError.General.UnknownError", exc.message)
    if isinstance(exc, neo4j_exc.ConfigurationError):
        return ConfigurationError(f"graph driver configuration: {exc}",
                                  details={"error": type(exc).__name__})
    if isinstance(exc, (neo4j_exc.ServiceUnavailable, neo4j_exc.SessionExpired,
                        neo4j_exc.ConnectionPoolError)):
        return ServiceUnavailable(f"graph server unreachable: {exc}",
                                  details={"error": type(exc).__name__})
    return None


@contextlib.contextmanager
def neo4j_errors() -> Iterator[None]:
    """Re-raise neo4j driver exceptions as tenantflow errors (see ``translate_neo4j_error``)."""
    try:
        yield
    except (neo4j_exc.Neo4jError, neo4j_exc.DriverError) as exc:
        ours = translate_neo4j_error(exc)
        if ours is None:
            raise
        raise ours from exc


# ----------------------------------------------------------------------------- Bolt
def open_driver(uri: str, user: str, password: str) -> neo4j.AsyncDriver:
    """An async driver with bounded connect / pool-acquisition waits."""
    return neo4j.AsyncGraphDatabase.driver(
        uri, auth=neo4j.basic_auth(user, password),
        connection_timeout=CONNECT_TIMEOUT_SECONDS,
        connection_acquisition_timeout=CONNECT_TIMEOUT_SECONDS,
    )


async def run_cypher(
    driver: neo4j.AsyncDriver,
    cypher: str,
    params: dict[str, Any] | None = None,
    *,
    database: str | None,
) -> list[dict[str, Any]]:
    """Run one auto-commit statement and return its rows as dicts.

    Auto-commit because administration commands (``CREATE DATABASE``, users, grants) may not run
    in explicit transactions. ``cypher`` is built only from literals and validated, quoted names;
    values always travel as ``params``.
    """
    with neo4j_errors():
        async with driver.session(database=database) as session:
            result = await session.run(cast(LiteralString, cypher), params or {})
            return await result.data()


# ------------------------------------------------------------------------- clients
def tenant_label(project_name: str) -> str:
    """The community-fallback label of a tenant, unquoted: ``Tenant_`` + name with ``-`` as ``_``.

    Project names never contain ``_``, so the mapping is one-to-one.
    """
    return "Tenant_" + validate_project_name(project_name).replace("-", "_")


@dataclass(frozen=True)
class TenantScope:
    """How a community-fallback tenant's nodes are told apart in the shared database."""

    tenant: str
    label: str  # backtick-quoted, ready to put in a pattern: (n:`Tenant_acme`)

    @classmethod
    def for_project(cls, project_name: str) -> TenantScope:
        return cls(tenant=project_name, label=f"`{tenant_label(project_name)}`")

    def check(self, cypher: str) -> None:
        """Refuse a statement that does not mention the tenant label (a seatbelt, see module doc)."""
        if self.label not in cypher:
            raise PermanentError(
                f"tenant {self.tenant!r} shares its graph database: every statement must match or "
                f"create nodes labelled {self.label}",
                details={"tenant": self.tenant, "label": self.label},
            )


class GraphClient(ABC):
    """A tenant's graph: ``run(cypher, **params) -> list[dict]`` whatever the transport."""

    def __init__(self, database: str, scope: TenantScope | None) -> None:
        self.database = validate_neo4j_database_name(database)
        self.scope = scope

    async def run(self, cypher: str, /, **params: Any) -> list[dict[str, Any]]:
        """Run one statement in its own transaction; rows come back as dicts."""
        if self.scope is not None:
            self.scope.check(cypher)
        return await self._execute(cypher, params)

    async def ping(self) -> dict[str, Any]:
        """A cheap statement proving the tenant's credentials reach its data."""
        if self.scope is not None:
            rows = await self.run(f"MATCH (n:{self.scope.label}) RETURN count(n) AS nodes")
            return {"database": self.database, "label": self.scope.label, "nodes": rows[0]["nodes"]}
        rows = await self.run("RETURN 1 AS ok")
        return {"database": self.database, "ok": rows[0]["ok"] == 1}

    @abstractmethod
    async def _execute(self, cypher: str, params: dict[str, Any]) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def aclose(self) -> None: ...


class BoltGraphClient(GraphClient):
    def __init__(self, driver: neo4j.AsyncDriver, database: str, scope: TenantScope | None = None) -> None:
        super().__init__(database, scope)
        self.driver = driver

    async def _execute(self, cypher: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return await run_cypher(self.driver, cypher, params, database=self.database)

    async def aclose(self) -> None:
        await self.driver.close()


class QueryApiGraphClient(GraphClient):
    """Neo4j Query API v2 over HTTPS (plain JSON results: nodes come back as
    ``{"elementId", "labels", "properties"}`` objects)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, database: str,
                 scope: TenantScope | None = None) -> None:
        super().__init__(database, scope)
        self.http = http
        self.url = f"{base_url.rstrip('/')}/db/{quote(self.database, safe='')}/query/v2"

    async def _execute(self, cypher: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            response = await self.http.post(self.url, json={"statement": cypher, "parameters": params})
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"graph Query API unreachable: {type(exc).__name__}",
                                     details={"error": type(exc).__name__}) from exc
        body = _json_or_none(response)
        if response.is_error or (body and body.get("errors")):
            raise _query_api_error(response.status_code, body)
        data = (body or {}).get("data") or {}
        fields = data.get("fields", [])
        return [dict(zip(fields, row, strict=True)) for row in data.get("values", [])]

    async def aclose(self) -> None:
        await self.http.aclose()


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _query_api_error(status: int, body: dict[str, Any] | None) -> TenantflowError:
    """The Query API's failure as our error: its Neo4j code when it sent one, else the status."""
    errors = (body or {}).get("errors") or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    code, message = first.get("code"), str(first.get("message", ""))
    if status == 429 or status >= 500:
        return ServiceUnavailable(f"graph Query API answered {status}: {message}",
                                  details={"status": status, "code": code})
    if code:
        return error_for_code(str(code), message)
    if status in (401, 403):
        return ConfigurationError(f"graph Query API refused the credentials ({status})",
                                  details={"status": status})
    return PermanentError(f"graph Query API answered {status}", details={"status": status})


def open_client(project: Project, password: str, *, http: bool = False) -> GraphClient:
    """A client for ``project``'s graph with the given (already opened) password."""
    if not (project.graph_uri and project.graph_database and project.graph_username):
        raise NotReady(f"tenant {project.name} has no graph connection recorded",
                       details={"project_id": str(project.id)})
    scope = (TenantScope.for_project(project.name)
             if project.graph_mode == GraphMode.COMMUNITY_FALLBACK else None)
    https = project.graph_uri if project.graph_uri.startswith("https://") else None
    if http and project.graph_http_uri:
        https = project.graph_http_uri
    if https:
        client = httpx.AsyncClient(
            auth=(project.graph_username, password), timeout=QUERY_TIMEOUT_SECONDS,
            headers={"Accept": "application/json"}, verify=shared_ssl_context(),
        )
        return QueryApiGraphClient(client, https, project.graph_database, scope)
    driver = open_driver(project.graph_uri, project.graph_username, password)
    return BoltGraphClient(driver, project.graph_database, scope)


def require_graph_online(project: Project) -> None:
    """``NotReady`` unless the tenant's graph database is online."""
    if project.graph_status != GraphStatus.ONLINE:
        raise NotReady(
            f"the graph database of tenant {project.name} is not ready "
            f"(graph status: {project.graph_status or 'not created'})",
            details={"project_id": str(project.id), "graph_status": project.graph_status},
        )


@contextlib.asynccontextmanager
async def _client(
    project: Project, credentials: CredentialStore, *, http: bool
) -> AsyncIterator[GraphClient]:
    require_graph_online(project)
    password = await credentials.get(project.id, GRAPH_PASSWORD)
    client = open_client(project, password, http=http)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def graph_client_for(
    project_id: uuid.UUID | str, *, store: Store, credentials: CredentialStore, http: bool = False
) -> AsyncIterator[GraphClient]:
    """The graph client of a tenant, closed on exit.

    Args:
        project_id: The tenant's id.
        store: The mirror store (reads the tenant's row).
        credentials: The credential store (opens the tenant's graph password).
        http: Use the Query API at ``graph_http_uri`` even when a Bolt URI is recorded.

    Raises:
        NotReady: The tenant does not exist, or its graph database is not online yet.
    """
    project = await store.get_project(uuid.UUID(str(project_id)))
    if project is None:
        raise NotReady(f"no tenant with id {project_id}", details={"project_id": str(project_id)})
    async with _client(project, credentials, http=http) as client:
        yield client


@contextlib.asynccontextmanager
async def graph_client_for_user(
    user_id: uuid.UUID | str, *, store: Store, credentials: CredentialStore, http: bool = False
) -> AsyncIterator[GraphClient]:
    """The graph client of a user's own tenant (``kind == "user"``); see ``graph_client_for``."""
    project = await store.get_user_project(uuid.UUID(str(user_id)))
    if project is None:
        raise NotReady(f"user {user_id} has no tenant", details={"user_id": str(user_id)})
    async with _client(project, credentials, http=http) as client:
        yield client
