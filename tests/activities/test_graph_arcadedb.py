"""The graph steps against a real ArcadeDB server (HTTP API + Bolt plugin), no mocks.

ArcadeDB backend: database per tenant, created over HTTP, readiness over Bolt. Neo4j backend
pointed at the same Bolt port: ArcadeDB reports itself ``community``, so the tenant gets the
community fallback (shared default database, per-tenant label).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.graph.neo4j
from activities.deps import Deps
from activities.graph import GraphActivities, verify_graph
from activities.graph.arcadedb import ArcadeDBGraphBackend, arcadedb_database_name
from activities.graph.backend import GRAPH_PASSWORD
from devstack.arcadedb import ArcadeDBServer
from devstack.ports import free_port
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import ConfigurationError, InvalidName, PermanentError
from tenantflow.graph_clients import GraphClient, graph_client_for, open_driver, run_cypher
from tenantflow.models import Project
from tenantflow.settings import Settings


@pytest.fixture
def arcade_settings(
    make_settings: Callable[..., Settings], arcadedb: ArcadeDBServer
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            graph_backend="arcadedb", arcadedb_http_url=arcadedb.http_url,
            arcadedb_bolt_uri=arcadedb.bolt_uri, arcadedb_password=arcadedb.password,
        )
        return make_settings(**{**values, **overrides})

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def deps(arcade_settings: Callable[..., Settings]) -> AsyncIterator[Deps]:
    d = Deps.from_settings(arcade_settings())
    yield d
    await d.aclose()


@pytest.fixture
def env() -> Iterator[ActivityEnvironment]:
    yield ActivityEnvironment()


def tenant_graph(
    deps: Deps, project_id: uuid.UUID, *, http: bool = False
) -> contextlib.AbstractAsyncContextManager[GraphClient]:
    return graph_client_for(project_id, store=deps.store, credentials=deps.credentials, http=http)


async def new_project(deps: Deps, tenant_name: Callable[[], str]) -> Project:
    created = await deps.store.create_project(name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES)
    return created.project


async def create(env: ActivityEnvironment, deps: Deps, project: Project) -> StepResult:
    return await env.run(GraphActivities(deps).create_graph_database, StepInput(str(project.id)))


async def wait(env: ActivityEnvironment, deps: Deps, project: Project) -> StepResult:
    return await env.run(GraphActivities(deps).wait_graph_database_online, StepInput(str(project.id)))


async def provision(env: ActivityEnvironment, deps: Deps, project: Project) -> Project:
    await create(env, deps, project)
    await wait(env, deps, project)
    found = await deps.store.get_project(project.id)
    assert found is not None
    return found


async def drop(env: ActivityEnvironment, deps: Deps, project: Project) -> StepResult:
    return await env.run(GraphActivities(deps).drop_graph_database, StepInput(str(project.id)))


def server_databases(server: ArcadeDBServer) -> list[str]:
    response = httpx.get(f"{server.http_url}/api/v1/databases", auth=(server.user, server.password))
    response.raise_for_status()
    return list(response.json()["result"])


# ---------------------------------------------------------------------------- ArcadeDB backend
async def test_create_then_wait_online_on_a_real_server(
    deps: Deps, env: ActivityEnvironment, arcadedb: ArcadeDBServer, tenant_name: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    project = await new_project(deps, tenant_name)
    database = f"tf-{project.name}"

    started = time.monotonic()
    created = await create(env, deps, project)
    created_in = time.monotonic() - started
    assert database in server_databases(arcadedb)
    assert created.details == {"backend": "arcadedb", "database": database,
                               "mode": "database-per-tenant", "username": database, "created": True}
    assert (await deps.store.get_project(project.id)).graph_status == "provisioning"  # type: ignore[union-attr]

    started = time.monotonic()
    online = await wait(env, deps, project)
    online_in = time.monotonic() - started
    print(f"\nArcadeDB: create_graph_database {created_in:.3f}s, "
          f"wait_graph_database_online {online_in:.3f}s ({online.details['polls']} polls)")

    assert online.details["status"] == "online" and online.details["database"] == database
    row = await deps.store.get_project(project.id)
    assert row is not None
    assert (row.graph_backend, row.graph_database, row.graph_mode, row.graph_uri, row.graph_username,
            row.graph_status) == ("arcadedb", database, "database-per-tenant", arcadedb.bolt_uri, database,
                                  "online")
    stored = await deps.credentials.get(project.id, GRAPH_PASSWORD)
    assert stored != arcadedb.password and len(stored) >= 24  # the tenant's own user's password
    steps = {s.step_name: s for s in await deps.store.get_steps(project.id)}
    assert steps["create_graph_database"].status == steps["wait_graph_database_online"].status == "success"
    for text in (repr(created), repr(online), repr(steps), caplog.text):
        assert arcadedb.password not in text


async def test_create_twice_is_idempotent(
    deps: Deps, env: ActivityEnvironment, arcadedb: ArcadeDBServer, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    first = await create(env, deps, project)
    second = await create(env, deps, project)
    assert (first.details["created"], second.details["created"]) == (True, False)
    assert server_databases(arcadedb).count(f"tf-{project.name}") == 1
    assert (await wait(env, deps, project)).status == "success"


async def test_tenants_do_not_see_each_others_data(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    a = await provision(env, deps, await new_project(deps, tenant_name))
    b = await provision(env, deps, await new_project(deps, tenant_name))

    async with tenant_graph(deps, a.id) as graph:
        assert graph.database == f"tf-{a.name}"
        await graph.run("CREATE (n:Secret {owner: $owner})", owner=a.name)
        assert await graph.run("MATCH (n:Secret) RETURN n.owner AS owner") == [{"owner": a.name}]
    async with tenant_graph(deps, b.id) as graph:
        assert await graph.run("MATCH (n) RETURN count(n) AS nodes") == [{"nodes": 0}]

    verified = await verify_graph(deps, a)
    assert verified == {"backend": "arcadedb", "mode": "database-per-tenant",
                        "database": f"tf-{a.name}", "ok": True}


async def login(deps: Deps, project: Project) -> tuple[str, str]:
    """The tenant's graph login, as its connection details hand it out."""
    row = await deps.store.get_project(project.id)
    assert row is not None and row.graph_username is not None
    return row.graph_username, await deps.credentials.get(project.id, GRAPH_PASSWORD)


async def test_a_tenants_credentials_cannot_read_or_write_another_tenants_graph(
    deps: Deps, env: ActivityEnvironment, arcadedb: ArcadeDBServer, tenant_name: Callable[[], str]
) -> None:
    a = await provision(env, deps, await new_project(deps, tenant_name))
    b = await provision(env, deps, await new_project(deps, tenant_name))
    user_a, password_a = await login(deps, a)
    assert user_a == f"tf-{a.name}" != arcadedb.user

    driver = open_driver(arcadedb.bolt_uri, user_a, password_a)
    try:
        mine = await run_cypher(driver, "CREATE (n:Mine) RETURN count(n) AS c", database=f"tf-{a.name}")
        assert mine == [{"c": 1}]
        for query in ("MATCH (n) RETURN count(n) AS c", "CREATE (n:Intruder) RETURN count(n) AS c"):
            with pytest.raises(ConfigurationError, match="Forbidden.*not allowed"):
                await run_cypher(driver, query, database=f"tf-{b.name}")
    finally:
        await driver.close()
    with httpx.Client(base_url=arcadedb.http_url, auth=(user_a, password_a)) as http:
        assert http.get("/api/v1/databases").json()["result"] == [f"tf-{a.name}"]
        for path in (f"/api/v1/query/tf-{b.name}", f"/api/v1/command/tf-{b.name}"):
            refused = http.post(path, json={"language": "sql", "command": "select from V"})
            assert refused.status_code == 403, refused.text
        assert http.post("/api/v1/server", json={"command": f"drop database tf-{b.name}"}).status_code == 403
    assert f"tf-{b.name}" in server_databases(arcadedb)
    async with tenant_graph(deps, b.id) as graph:
        assert await graph.run("MATCH (n:Intruder) RETURN count(n) AS c") == [{"c": 0}]

    # Dropping the tenant's graph takes its user with it; a repeat is harmless.
    assert (await drop(env, deps, a)).details["user_dropped"] is True
    with httpx.Client(base_url=arcadedb.http_url, auth=(user_a, password_a)) as http:
        assert http.get("/api/v1/databases").status_code == 403
    assert (await drop(env, deps, a)).details["user_dropped"] is False


async def test_a_tenant_made_before_per_tenant_users_gets_its_own_on_a_rerun(
    deps: Deps, env: ActivityEnvironment, arcadedb: ArcadeDBServer, tenant_name: Callable[[], str]
) -> None:
    project = await provision(env, deps, await new_project(deps, tenant_name))
    # As the code before per-tenant users left it: the row names root, root's password stored.
    await deps.store.update_project(project.id, graph_username=arcadedb.user)
    await deps.credentials.put(project.id, GRAPH_PASSWORD, arcadedb.password)
    legacy = await deps.store.get_project(project.id)
    assert legacy is not None
    await create(env, deps, legacy)
    user, password = await login(deps, project)
    assert (user, password != arcadedb.password) == (f"tf-{project.name}", True)
    with httpx.Client(base_url=arcadedb.http_url, auth=(user, password)) as http:
        assert http.get("/api/v1/databases").json()["result"] == [f"tf-{project.name}"]


async def test_a_user_left_by_a_crashed_attempt_is_given_the_stored_password(
    deps: Deps, env: ActivityEnvironment, arcadedb: ArcadeDBServer, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    database = f"tf-{project.name}"
    # A first attempt created the user with a password it never stored, then died.
    with httpx.Client(base_url=arcadedb.http_url, auth=(arcadedb.user, arcadedb.password)) as http:
        command = "create user " + json.dumps({"name": database, "password": "lost-with-the-worker",
                                               "databases": {database: ["admin"]}})
        http.post("/api/v1/server", json={"command": command}).raise_for_status()
    await provision(env, deps, project)
    user, password = await login(deps, project)
    with httpx.Client(base_url=arcadedb.http_url) as http:
        assert http.get("/api/v1/databases", auth=(user, password)).status_code == 200
        assert http.get("/api/v1/databases", auth=(user, "lost-with-the-worker")).status_code == 403


async def test_wait_for_a_database_that_is_not_there_times_out(
    arcade_settings: Callable[..., Settings], env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    deps = Deps.from_settings(arcade_settings(graph_wait_timeout_seconds=0.5))
    try:
        project = await new_project(deps, tenant_name)
        await create(env, deps, project)
        await deps.store.update_project(project.id, graph_database=f"tf-{project.name}-gone")
        with pytest.raises(ApplicationError) as failed:
            await wait(env, deps, project)
        assert failed.value.non_retryable and failed.value.type == "GraphDatabaseFailed"
        assert "last status seen: absent" in failed.value.message
        assert (await deps.store.get_project(project.id)).graph_status == "failed"  # type: ignore[union-attr]
    finally:
        await deps.aclose()


async def test_wrong_root_password_is_a_non_retryable_configuration_error(
    arcade_settings: Callable[..., Settings], env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    deps = Deps.from_settings(arcade_settings(arcadedb_password="not-the-root-password"))
    try:
        project = await new_project(deps, tenant_name)
        with pytest.raises(ApplicationError) as failed:
            await create(env, deps, project)
        assert failed.value.non_retryable and failed.value.type == "ConfigurationError"
        assert "not-the-root-password" not in repr(failed.value) + repr(failed.value.details)
    finally:
        await deps.aclose()


async def test_server_down_is_retryable(
    arcade_settings: Callable[..., Settings], env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    deps = Deps.from_settings(arcade_settings(arcadedb_http_url=nowhere))
    try:
        project = await new_project(deps, tenant_name)
        with pytest.raises(ApplicationError) as failed:
            await create(env, deps, project)
        assert not failed.value.non_retryable and failed.value.type == "ServiceUnavailable"
    finally:
        await deps.aclose()


def test_arcadedb_database_names_are_validated() -> None:
    assert arcadedb_database_name("acme-web") == "tf-acme-web"
    for bad in ("Acme", "a b", "x/y", "acme_web", "acme-"):
        with pytest.raises(InvalidName):
            arcadedb_database_name(bad)


# ------------------------------------------------ Neo4j backend on ArcadeDB's Bolt: community
@pytest.fixture
def community_settings(make_settings: Callable[..., Settings], arcadedb: ArcadeDBServer) -> Settings:
    return make_settings(graph_backend="neo4j", neo4j_uri=arcadedb.bolt_uri, neo4j_user=arcadedb.user,
                         neo4j_password=arcadedb.password)


async def test_neo4j_backend_detects_community_and_scopes_tenants_by_label(
    community_settings: Settings, env: ActivityEnvironment, arcadedb: ArcadeDBServer,
    tenant_name: Callable[[], str],
) -> None:
    deps = Deps.from_settings(community_settings)
    try:
        a_project, b_project = await new_project(deps, tenant_name), await new_project(deps, tenant_name)
        created = await create(env, deps, a_project)
        assert created.details["edition"] == "community"
        assert created.details["mode"] == "community-fallback" and created.details["database"] == "neo4j"
        assert (await create(env, deps, a_project)).details == created.details  # idempotent
        assert f"tf-{a_project.name}" not in server_databases(arcadedb)  # no database of its own

        a = await provision(env, deps, a_project)
        b = await provision(env, deps, b_project)
        assert (a.graph_mode, a.graph_database, a.graph_status) == ("community-fallback", "neo4j", "online")
        async with tenant_graph(deps, a.id) as graph:
            assert graph.scope is not None
            label = graph.scope.label
            await graph.run(f"CREATE (n:{label}:Doc {{title: $title}})", title="for a only")
            with pytest.raises(PermanentError, match="labelled"):
                await graph.run("MATCH (n:Doc) RETURN n.title AS title")
        async with tenant_graph(deps, b.id) as graph:
            assert graph.scope is not None and graph.scope.label != label
            counted = await graph.run(f"MATCH (n:{graph.scope.label}) RETURN count(n) AS nodes")
            assert counted == [{"nodes": 0}]

        assert (await verify_graph(deps, a))["nodes"] == 1

        driver = open_driver(arcadedb.bolt_uri, arcadedb.user, arcadedb.password)
        try:
            registry = await run_cypher(
                driver, "MATCH (t:TenantflowTenant) WHERE t.name IN $names RETURN t.name AS name, "
                "t.label AS label ORDER BY name", {"names": [a.name, b.name]}, database="neo4j")
        finally:
            await driver.close()
        assert registry == sorted(
            [{"name": p.name, "label": "Tenant_" + p.name} for p in (a, b)], key=lambda r: r["name"])
    finally:
        await deps.aclose()


# ---------------------------------------------------------------------------------- dropping
async def test_drop_removes_the_database_and_a_second_drop_changes_nothing(
    deps: Deps, env: ActivityEnvironment, arcadedb: ArcadeDBServer, tenant_name: Callable[[], str]
) -> None:
    project = await provision(env, deps, await new_project(deps, tenant_name))
    neighbour = await provision(env, deps, await new_project(deps, tenant_name))
    await deps.store.ensure_steps(project.id, PROJECT_TEARDOWN_STEP_NAMES)
    database = f"tf-{project.name}"

    result = await drop(env, deps, project)

    assert result.status == "success"
    assert result.details == {"backend": "arcadedb", "database": database, "dropped": True,
                              "user_dropped": True, "credentials_deleted": [GRAPH_PASSWORD]}
    listed = server_databases(arcadedb)
    assert database not in listed and f"tf-{neighbour.name}" in listed
    row = await deps.store.get_project(project.id)
    assert row is not None and row.graph_status == "deleted"
    assert (row.graph_backend, row.graph_database) == ("arcadedb", database)  # kept for audit
    assert await deps.credentials.find(project.id, GRAPH_PASSWORD) is None
    assert await deps.credentials.find(neighbour.id, GRAPH_PASSWORD) is not None
    step = {s.step_name: s for s in await deps.store.get_steps(project.id)}["drop_graph_database"]
    assert step.status == "success" and step.result == result.details
    assert arcadedb.password not in repr(result) + repr(step)

    again = await drop(env, deps, project)
    assert again.status == "success" and again.details["dropped"] is False
    assert server_databases(arcadedb) == listed


async def test_drop_of_a_tenant_whose_database_was_never_created_succeeds(
    deps: Deps, env: ActivityEnvironment, arcadedb: ArcadeDBServer, tenant_name: Callable[[], str]
) -> None:
    before = server_databases(arcadedb)
    project = await new_project(deps, tenant_name)
    result = await drop(env, deps, project)
    assert result.status == "success" and result.details["dropped"] is False
    assert server_databases(arcadedb) == before
    row = await deps.store.get_project(project.id)
    assert row is not None and row.graph_status == "deleted"


async def test_a_database_dropped_between_listing_and_dropping_counts_as_dropped(
    deps: Deps, env: ActivityEnvironment, arcadedb: ArcadeDBServer, tenant_name: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ArcadeDB refuses the drop of a missing database with java.lang.IllegalArgumentException;
    the list read again, not the message, says it is gone."""
    project = await new_project(deps, tenant_name)
    await create(env, deps, project)
    database = f"tf-{project.name}"
    impl = ArcadeDBGraphBackend(deps)
    try:
        stale = await impl.databases()
        httpx.post(f"{arcadedb.http_url}/api/v1/server", json={"command": f"drop database {database}"},
                   auth=(arcadedb.user, arcadedb.password)).raise_for_status()
        real = impl.databases
        answers = [stale]

        async def databases() -> list[str]:
            return answers.pop() if answers else await real()

        monkeypatch.setattr(impl, "databases", databases)
        assert await impl.drop(project) == {"backend": "arcadedb", "database": database, "dropped": False,
                                            "user_dropped": True}
    finally:
        await impl.aclose()


# --------------------------------------------- Neo4j backend on ArcadeDB's Bolt: community drop
async def test_neo4j_community_drop_deletes_the_tenants_nodes_and_registry_node_only(
    community_settings: Settings, env: ActivityEnvironment, arcadedb: ArcadeDBServer,
    tenant_name: Callable[[], str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(activities.graph.neo4j, "DROP_BATCH", 2)  # 5 nodes: batches of 2, 2, 1
    deps = Deps.from_settings(community_settings)
    driver = open_driver(arcadedb.bolt_uri, arcadedb.user, arcadedb.password)
    try:
        a = await provision(env, deps, await new_project(deps, tenant_name))
        b = await provision(env, deps, await new_project(deps, tenant_name))
        for project, nodes in ((a, 5), (b, 1)):
            async with tenant_graph(deps, project.id) as graph:
                assert graph.scope is not None
                for i in range(nodes):
                    await graph.run(f"CREATE (n:{graph.scope.label} {{i: $i}})", i=i)
        await deps.store.ensure_steps(a.id, PROJECT_TEARDOWN_STEP_NAMES)

        result = await drop(env, deps, a)

        label = f"`Tenant_{a.name}`"
        assert result.status == "success"
        assert result.details == {"backend": "neo4j", "mode": "community-fallback", "database": "neo4j",
                                  "label": label, "nodes_deleted": 5, "registry_deleted": True,
                                  "credentials_deleted": [GRAPH_PASSWORD]}

        async def count(cypher: str, **params: Any) -> int:
            rows = await run_cypher(driver, cypher, params, database="neo4j")
            return int(rows[0]["n"])

        assert await count(f"MATCH (n:{label}) RETURN count(n) AS n") == 0
        assert await count(f"MATCH (n:`Tenant_{b.name}`) RETURN count(n) AS n") == 1
        registry = "MATCH (t:TenantflowTenant) WHERE t.name = $name RETURN count(t) AS n"
        assert (await count(registry, name=a.name), await count(registry, name=b.name)) == (0, 1)
        row = await deps.store.get_project(a.id)
        assert row is not None and row.graph_status == "deleted" and row.graph_mode == "community-fallback"
        assert await deps.credentials.find(a.id, GRAPH_PASSWORD) is None

        again = await drop(env, deps, a)
        assert (again.details["nodes_deleted"], again.details["registry_deleted"]) == (0, False)
        never = await drop(env, deps, await new_project(deps, tenant_name))
        assert never.status == "success" and never.details["nodes_deleted"] == 0
        assert await count(f"MATCH (n:`Tenant_{b.name}`) RETURN count(n) AS n") == 1
    finally:
        await driver.close()
        await deps.aclose()
