"""The graph client factory: refuses tenants whose graph is not online; serves the same
``run(cypher, **params)`` over Bolt and over the Query API v2.

The Query API is served by a stand-in that answers ``POST /db/{database}/query/v2`` the way
Neo4j documents it (202 ``{"data": {"fields", "values"}}``; 4xx ``{"errors": [{"code",
"message"}]}``), executing the statements on the real ArcadeDB server over Bolt.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import neo4j
import neo4j.exceptions as neo4j_exc
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from activities.deps import Deps
from activities.graph.backend import GRAPH_PASSWORD
from devstack.arcadedb import ArcadeDBServer
from standins.server import ThreadedServer
from tenantflow.catalog import PROJECT_STEP_NAMES, USER_STEP_NAMES
from tenantflow.errors import ConfigurationError, NotReady, PermanentError
from tenantflow.graph_clients import (
    GraphClient,
    QueryApiGraphClient,
    TenantScope,
    graph_client_for,
    graph_client_for_user,
)
from tenantflow.models import Project
from tenantflow.names import user_project_name
from tenantflow.settings import Settings


@pytest_asyncio.fixture(loop_scope="session")
async def deps(make_settings: Callable[..., Settings]) -> AsyncIterator[Deps]:
    d = Deps.from_settings(make_settings())
    yield d
    await d.aclose()


def tenant_graph(
    deps: Deps, project_id: uuid.UUID, *, http: bool = False
) -> contextlib.AbstractAsyncContextManager[GraphClient]:
    return graph_client_for(project_id, store=deps.store, credentials=deps.credentials, http=http)


async def graph_tenant(deps: Deps, name: str, *, status: str | None, kind: str = "project",
                       user_id: uuid.UUID | None = None, **graph: Any) -> Project:
    steps = PROJECT_STEP_NAMES if kind == "project" else USER_STEP_NAMES
    project = (await deps.store.create_project(name=name, kind=kind, steps=steps,
                                               external_user_id=user_id)).project
    await deps.store.update_project(project.id, graph_status=status, **graph)
    return project


# ------------------------------------------------------------------------------- refusal
@pytest.mark.parametrize("status", [None, "provisioning", "failed"])
async def test_refuses_a_tenant_whose_graph_is_not_online(
    deps: Deps, tenant_name: Callable[[], str], status: str | None
) -> None:
    project = await graph_tenant(deps, tenant_name(), status=status, graph_backend="arcadedb",
                                 graph_database="tf-x-db", graph_uri="bolt://127.0.0.1:1",
                                 graph_username="root")
    await deps.credentials.put(project.id, GRAPH_PASSWORD, "a-password")
    with pytest.raises(NotReady, match="not ready") as refused:
        async with graph_client_for(project.id, store=deps.store, credentials=deps.credentials):
            pytest.fail("a client was handed out")
    assert refused.value.details == {"project_id": str(project.id), "graph_status": status}
    assert "a-password" not in repr(refused.value)


async def test_refuses_an_unknown_tenant(deps: Deps) -> None:
    with pytest.raises(NotReady, match="no tenant"):
        async with graph_client_for(uuid.uuid4(), store=deps.store, credentials=deps.credentials):
            pytest.fail("a client was handed out")


async def test_user_factory_refuses_until_the_users_graph_is_online(deps: Deps) -> None:
    user_id = uuid.uuid4()
    with pytest.raises(NotReady, match="has no tenant"):
        async with graph_client_for_user(user_id, store=deps.store, credentials=deps.credentials):
            pytest.fail("a client was handed out")
    await graph_tenant(deps, user_project_name(user_id), status="provisioning", kind="user",
                       user_id=user_id)
    with pytest.raises(NotReady, match="not ready"):
        async with graph_client_for_user(user_id, store=deps.store, credentials=deps.credentials):
            pytest.fail("a client was handed out")


async def test_online_without_a_stored_password_is_not_ready(
    deps: Deps, tenant_name: Callable[[], str]
) -> None:
    project = await graph_tenant(deps, tenant_name(), status="online", graph_database="tf-x-db",
                                 graph_uri="bolt://127.0.0.1:1", graph_username="root")
    with pytest.raises(NotReady, match="credential"):
        async with graph_client_for(project.id, store=deps.store, credentials=deps.credentials):
            pytest.fail("a client was handed out")


def test_community_scope_refuses_statements_without_the_tenant_label() -> None:
    scope = TenantScope.for_project("acme-web")
    assert scope.label == "`Tenant_acme_web`"
    scope.check("MATCH (n:`Tenant_acme_web`) RETURN n")
    with pytest.raises(PermanentError, match="labelled `Tenant_acme_web`"):
        scope.check("MATCH (n) RETURN n")


# ------------------------------------------------------------------------- both transports
@pytest.fixture(scope="module")
def query_api(arcadedb: ArcadeDBServer) -> Iterator[str]:
    """A Query API v2 stand-in in front of the ArcadeDB server (same users, same databases)."""
    driver: dict[str, neo4j.AsyncDriver] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if "db" in driver:
            await driver["db"].close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/db/{database}/query/v2")
    async def query(database: str, request: Request) -> JSONResponse:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        user, _, password = base64.b64decode(encoded).decode().partition(":") if encoded else ("", "", "")
        if scheme != "Basic" or (user, password) != (arcadedb.user, arcadedb.password):
            return JSONResponse({"errors": [{"code": "Neo.ClientError.Security.Unauthorized",
                                             "message": "Invalid credential."}]}, status_code=401)
        body = await request.json()
        if "db" not in driver:
            driver["db"] = neo4j.AsyncGraphDatabase.driver(arcadedb.bolt_uri, auth=(user, password))
        try:
            async with driver["db"].session(database=database) as session:
                result = await session.run(body["statement"], body.get("parameters") or {})
                records = [r async for r in result]
                fields = list(result.keys())
        except neo4j_exc.Neo4jError as exc:
            return JSONResponse({"errors": [{"code": exc.code, "message": exc.message}]}, status_code=400)
        return JSONResponse({"data": {"fields": fields, "values": [list(r.values()) for r in records]},
                             "bookmarks": []}, status_code=202)

    with ThreadedServer(app) as server:
        yield server.url


async def online_tenant(deps: Deps, arcadedb: ArcadeDBServer, name: str, *, http_uri: str,
                        password: str) -> Project:
    """A tenant on its own ArcadeDB database, recorded as online (as the steps would leave it)."""
    database = f"tf-{name}"
    httpx.post(f"{arcadedb.http_url}/api/v1/server", json={"command": f"create database {database}"},
               auth=(arcadedb.user, arcadedb.password)).raise_for_status()
    project = await graph_tenant(deps, name, status="online", graph_backend="arcadedb",
                                 graph_mode="database-per-tenant", graph_database=database,
                                 graph_uri=arcadedb.bolt_uri, graph_http_uri=http_uri,
                                 graph_username=arcadedb.user)
    await deps.credentials.put(project.id, GRAPH_PASSWORD, password)
    return project


async def test_bolt_and_query_api_clients_answer_alike(
    deps: Deps, arcadedb: ArcadeDBServer, query_api: str, tenant_name: Callable[[], str]
) -> None:
    project = await online_tenant(deps, arcadedb, tenant_name(), http_uri=query_api,
                                  password=arcadedb.password)
    async with tenant_graph(deps, project.id) as bolt:
        await bolt.run("CREATE (:Person {name: $name, age: $age})", name="Ada", age=36)
        over_bolt = await bolt.run("MATCH (p:Person) RETURN p.name AS name, p.age AS age")
    async with tenant_graph(deps, project.id, http=True) as http:
        assert isinstance(http, QueryApiGraphClient)
        assert http.url == f"{query_api}/db/tf-{project.name}/query/v2"
        over_http = await http.run("MATCH (p:Person) RETURN p.name AS name, p.age AS age")
        assert await http.ping() == {"database": f"tf-{project.name}", "ok": True}
        with pytest.raises(PermanentError) as refused:
            await http.run("THIS IS NOT CYPHER")
    assert over_bolt == over_http == [{"name": "Ada", "age": 36}]
    assert refused.value.details["code"].startswith("Neo.ClientError.")


async def test_query_api_rejecting_the_credentials_is_a_configuration_error(
    deps: Deps, arcadedb: ArcadeDBServer, query_api: str, tenant_name: Callable[[], str]
) -> None:
    project = await online_tenant(deps, arcadedb, tenant_name(), http_uri=query_api,
                                  password="stale-password-0123")
    async with tenant_graph(deps, project.id, http=True) as http:
        with pytest.raises(ConfigurationError) as refused:
            await http.run("RETURN 1 AS ok")
    assert refused.value.details["code"] == "Neo.ClientError.Security.Unauthorized"
    assert "stale-password-0123" not in repr(refused.value)
    async with tenant_graph(deps, project.id) as bolt:
        with pytest.raises(ConfigurationError):
            await bolt.run("RETURN 1 AS ok")
