"""ArcadeDB as a graph backend: one ArcadeDB database per tenant, used over Bolt.

Isolation is per database AND per user: each tenant gets its own database, named
``arcadedb_database_name(project.name)`` (``tf-<name>``), and its own ArcadeDB server user of the
same name, allowed only that database (group ``admin`` of that database: schema and data, nothing
on any other database or on the server). Its password is generated once (a retry reuses it),
sealed in the credential store under the tenant's ``GRAPH_PASSWORD`` reference, and the row
records the user, so the client factory and the connection details hand out credentials that open
this tenant's graph and no other (measured on 26.10: another tenant's database answers 403 over
HTTP and ``Neo.ClientError.Security.Forbidden`` over Bolt). tenantflow itself keeps using the
server's ``root`` (``arcadedb_user``) for creating, polling and dropping.

Users: ``create user {"name", "password", "databases": {db: ["admin"]}}`` (names need 4+ characters;
``tf-`` plus a 3-character project name is 6). A user that exists already (a retry after a crash
between creating it and recording it, or a tenant from before per-tenant users, whose row names
``root`` and whose stored password was root's) is dropped and created again with the stored (or a
new) password, so the stored credential is always the one that works. ArcadeDB cannot list users,
so a ``drop user`` refused with ``IllegalArgumentException`` counts as done only once the tenant's
own login is refused too.

Creating: ``CREATE DATABASE`` over Bolt is a syntax error on ArcadeDB, so the database is created
with its HTTP API: ``GET /api/v1/databases`` first (it lists every database), then, if missing,
``POST /api/v1/server {"command": "create database NAME"}`` with basic auth. A 409
``DatabaseAlreadyExistsException`` (a concurrent or earlier attempt won) counts as success.
Readiness is then polled over Bolt exactly as for Neo4j
(``activities.graph.neo4j.wait_database_online``: ``SHOW DATABASES ... WHERE name = $name``).

Dropping mirrors creating: list first, and only a listed database gets ``POST /api/v1/server
{"command": "drop database NAME"}``. ArcadeDB has no exception class of its own for dropping a
database that does not exist: it answers 400 ``java.lang.IllegalArgumentException`` (measured on
26.10), the class it uses for any bad argument. So that class alone proves nothing; when a drop is
refused with it, the list is read again, and the database missing from it (a concurrent or earlier
attempt dropped it) is what makes the refusal a success. The drop is synchronous: once it answers,
the database is gone from the list.

Names, as measured on ArcadeDB 26.10: the server accepts upper case (kept as given), ``-``, ``.``
and even spaces, and refuses ``/``; database names become directory names. We use the strict
subset also valid for Neo4j, without dots: ``[a-z][a-z0-9-]*[a-z0-9]``, 3-63 characters, so the
name is safe in the HTTP command string (no spaces or quotes) and over Bolt.

HTTP errors become ours at the project's one HTTP boundary (``tenantflow.http_errors``): outages
are retryable, 401/403 mean the configured root credentials are wrong (``ConfigurationError``),
other 4xx are ``ServiceRejected``. This module adds only how ArcadeDB explains an error
(:func:`arcadedb_message`: ``{"error", "detail", "exception"}``), keeping its Java exception class
in ``details["exception"]`` for callers to branch on (never on the message).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import httpx
import neo4j

from activities.deps import Deps
from activities.graph.backend import GRAPH_PASSWORD, verify_with_tenant_client
from activities.graph.neo4j import new_password, wait_database_online
from tenantflow.errors import InvalidName, NotReady, ServiceRejected
from tenantflow.graph_clients import GraphMode, open_driver
from tenantflow.http_errors import HttpService, Said, json_body
from tenantflow.models import Project
from tenantflow.names import graph_db_name
from tenantflow.tls import shared_ssl_context

BACKEND = "arcadedb"
ALREADY_EXISTS = "com.arcadedb.server.DatabaseAlreadyExistsException"
USER_EXISTS = "com.arcadedb.server.security.UserAlreadyExistsException"
# The tenant user's rights in its own database (ArcadeDB's per-database group with every right).
TENANT_GROUP = "admin"
ILLEGAL_ARGUMENT = "java.lang.IllegalArgumentException"  # among others: dropping a missing database
ARCADEDB_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")


def arcadedb_database_name(project_name: str) -> str:
    """The tenant's ArcadeDB database name (see the module docstring for the rules)."""
    name = graph_db_name(project_name)
    if not ARCADEDB_NAME_RE.fullmatch(name):
        raise InvalidName(f"invalid ArcadeDB database name {name!r}: [a-z0-9-], letter first, 3-63 chars")
    return name


def arcadedb_message(response: httpx.Response) -> Said:
    """ArcadeDB's explanation of an error: ``detail`` (or ``error``), and its exception class."""
    body = json_body(response)
    body = body if isinstance(body, dict) else {}
    return Said(str(body.get("detail") or body.get("error") or ""), {"exception": body.get("exception")})


class ArcadeDBGraphBackend:
    """:class:`activities.graph.backend.GraphBackendImpl` for an ArcadeDB server.

    Args:
        deps: The worker's dependencies.
        driver: A Bolt driver to use instead of one opened from settings.
        http: An HTTP client for the server API instead of one built from settings.
    """

    def __init__(self, deps: Deps, *, driver: neo4j.AsyncDriver | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.deps = deps
        self.settings = deps.settings
        self._driver = driver
        self._http = http
        self.boundary = HttpService(BACKEND, read=arcadedb_message,
                                    secrets=(deps.settings.arcadedb_password.get_secret_value(),))

    @property
    def driver(self) -> neo4j.AsyncDriver:
        if self._driver is None:
            s = self.settings
            self._driver = open_driver(s.arcadedb_bolt_uri, s.arcadedb_user,
                                       s.arcadedb_password.get_secret_value())
        return self._driver

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            s = self.settings
            self._http = httpx.AsyncClient(
                base_url=s.arcadedb_http_url,
                auth=(s.arcadedb_user, s.arcadedb_password.get_secret_value()),
                timeout=s.service_timeout_seconds,
                verify=shared_ssl_context(),
            )
        return self._http

    async def aclose(self) -> None:
        if self._driver is not None:
            await self._driver.close()
        if self._http is not None:
            await self._http.aclose()

    async def _request(
        self, method: str, path: str, *, operation: str, secret: str | None = None, **kwargs: Any
    ) -> Any:
        boundary = self.boundary
        if secret is not None:  # sent in this request: scrubbed from any error it comes back in
            boundary = dataclasses.replace(boundary, secrets=(*boundary.secrets, secret))
        response = await boundary.request(self.http, method, path, operation=operation, **kwargs)
        return response.json()

    async def _server_command(self, command: str, *, operation: str, secret: str | None = None) -> Any:
        return await self._request("POST", "/api/v1/server", operation=operation, secret=secret,
                                   json={"command": command})

    async def databases(self) -> list[str]:
        """Every database on the server."""
        body = await self._request("GET", "/api/v1/databases", operation="list databases")
        return [str(name) for name in body.get("result", [])]

    async def create(self, project: Project) -> dict[str, Any]:
        """Create the tenant's database unless it exists; record it; store the password reference."""
        database = arcadedb_database_name(project.name)
        created = database not in await self.databases()
        if created:
            try:
                await self._request("POST", "/api/v1/server", operation="create database",
                                    json={"command": f"create database {database}"})
            except ServiceRejected as exc:
                if exc.details.get("exception") != ALREADY_EXISTS:
                    raise
                created = False
        user = database
        if project.graph_username == self.settings.arcadedb_user:
            # Made before per-tenant users: the stored password is root's; never reuse it.
            password = new_password()
            await self.deps.credentials.put(project.id, GRAPH_PASSWORD, password)
        else:
            password = await self.deps.credentials.generated(project.id, GRAPH_PASSWORD, new_password)
        await self._create_user(user, password, database)
        mode = GraphMode.DATABASE_PER_TENANT.value
        await self.deps.store.update_project(
            project.id, graph_backend=BACKEND, graph_database=database, graph_mode=mode,
            graph_uri=self.settings.arcadedb_bolt_uri, graph_username=user,
        )
        return {"backend": BACKEND, "database": database, "mode": mode, "username": user,
                "created": created}

    async def _create_user(self, user: str, password: str, database: str) -> None:
        """The tenant's server user, allowed only ``database``, with ``password`` (see above)."""
        spec = json.dumps({"name": user, "password": password, "databases": {database: [TENANT_GROUP]}})
        try:
            await self._server_command(f"create user {spec}", operation="create user", secret=password)
        except ServiceRejected as exc:
            if exc.details.get("exception") != USER_EXISTS:
                raise
            await self._server_command(f"drop user {user}", operation="drop user")
            await self._server_command(f"create user {spec}", operation="create user", secret=password)

    async def drop(self, project: Project) -> dict[str, Any]:
        """Drop the tenant's database if the server lists it (see the module docstring)."""
        database = arcadedb_database_name(project.name)
        dropped = database in await self.databases()
        if dropped:
            try:
                await self._request("POST", "/api/v1/server", operation="drop database",
                                    json={"command": f"drop database {database}"})
            except ServiceRejected as exc:
                if exc.details.get("exception") != ILLEGAL_ARGUMENT or database in await self.databases():
                    raise
                dropped = False
        user_dropped = await self._drop_user(project, database)
        return {"backend": BACKEND, "database": database, "dropped": dropped, "user_dropped": user_dropped}

    async def _drop_user(self, project: Project, user: str) -> bool:
        """Drop the tenant's user; False if it was gone already (proved by its login failing)."""
        try:
            await self._server_command(f"drop user {user}", operation="drop user")
        except ServiceRejected as exc:
            if exc.details.get("exception") != ILLEGAL_ARGUMENT or await self._can_log_in(project, user):
                raise
            return False
        return True

    async def _can_log_in(self, project: Project, user: str) -> bool:
        try:
            password = await self.deps.credentials.get(project.id, GRAPH_PASSWORD)
        except NotReady:
            return False  # no password was ever stored: nobody holds a login to refuse
        response = await self.http.get("/api/v1/databases", auth=(user, password))
        return response.is_success

    async def wait_online(self, project: Project) -> dict[str, Any]:
        """Poll ``SHOW DATABASES`` over Bolt until the tenant's database is online."""
        database = project.graph_database or arcadedb_database_name(project.name)
        polled = await wait_database_online(self.driver, database, self.settings)
        return {"backend": BACKEND, "mode": project.graph_mode, **polled}

    async def verify(self, project: Project) -> dict[str, Any]:
        """The tenant's client reaches its database."""
        return await verify_with_tenant_client(self.deps, project)
