"""The Neo4j self-managed backend at the driver boundary.

No Neo4j Enterprise runs here, so its paths are checked against a scripted async driver that
records every statement (cypher, parameters, database) and answers like the server would. The
steps run for real in ``ActivityEnvironment`` against the mirror and the credential store. The
Community path also runs against a real Bolt server in ``test_graph_arcadedb.py``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import neo4j.exceptions as neo4j_exc
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deps import Deps
from activities.graph import GraphActivities
from activities.graph.backend import GRAPH_PASSWORD
from activities.graph.neo4j import Neo4jGraphBackend
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.contracts import StepInput, StepResult
from tenantflow.models import Project
from tenantflow.settings import Settings

ADMIN_PASSWORD = "admin-password-0123456789"
UNSUPPORTED = "Neo.ClientError.Statement.UnsupportedAdministrationCommand"


def server_error(code: str, message: str) -> neo4j_exc.Neo4jError:
    """The exception the driver raises for a server FAILURE with this code."""
    return neo4j_exc.Neo4jError._hydrate_neo4j(code=code, message=message)


# --------------------------------------------------------------------------- scripted driver
@dataclass
class Call:
    cypher: str
    params: dict[str, Any]
    database: str | None


@dataclass
class FakeNeo4j:
    """A scripted server behind a fake ``AsyncDriver``.

    ``statuses`` are returned by successive readiness polls (the last one repeats); an exception
    in that list is raised by that poll. ``fail`` maps a statement prefix to the error it raises.
    """

    edition: str = "enterprise"
    statuses: list[str | Exception] = field(default_factory=lambda: ["online"])
    status_message: str = ""
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    closed: int = 0

    def session(self, database: str | None = None, **_: Any) -> FakeSession:
        return FakeSession(self, database)

    async def close(self) -> None:
        self.closed += 1

    def answer(self, call: Call) -> list[dict[str, Any]]:
        self.calls.append(call)
        for prefix, exc in self.fail.items():
            if call.cypher.startswith(prefix):
                raise exc
        if call.cypher.startswith("CALL dbms.components()"):
            return [{"edition": self.edition}]
        if call.cypher.startswith("SHOW DATABASES YIELD name, currentStatus"):
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            if isinstance(status, Exception):
                raise status
            return [{"name": call.params["name"], "currentStatus": status,
                     "statusMessage": self.status_message}]
        if call.cypher.startswith("SHOW DATABASES YIELD name, `default`"):
            return [{"name": "neo4j"}]
        return []

    def statements(self) -> list[str]:
        return [c.cypher for c in self.calls]


class FakeResult:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def data(self) -> list[dict[str, Any]]:
        return self.rows


class FakeSession:
    def __init__(self, server: FakeNeo4j, database: str | None) -> None:
        self.server, self.database = server, database

    async def __aenter__(self) -> FakeSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, query: Any, parameters: dict[str, Any] | None = None, **_: Any) -> FakeResult:
        return FakeResult(self.server.answer(Call(str(query), dict(parameters or {}), self.database)))


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture
def neo4j_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(graph_backend="neo4j", neo4j_uri="bolt://neo4j.invalid:7687",
                                      neo4j_user="neo4j", neo4j_password=ADMIN_PASSWORD)
        return make_settings(**{**values, **overrides})

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def deps(neo4j_settings: Callable[..., Settings]) -> AsyncIterator[Deps]:
    d = Deps.from_settings(neo4j_settings(graph_wait_timeout_seconds=2.0))
    yield d
    await d.aclose()


@pytest.fixture
def heartbeats() -> list[Any]:
    return []


@pytest.fixture
def env(heartbeats: list[Any]) -> Iterator[ActivityEnvironment]:
    environment = ActivityEnvironment()
    environment.on_heartbeat = lambda *details: heartbeats.append(details)
    yield environment


async def new_project(deps: Deps, tenant_name: Callable[[], str]) -> Project:
    created = await deps.store.create_project(name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES)
    return created.project


def activities(deps: Deps, server: FakeNeo4j) -> GraphActivities:
    return GraphActivities(deps, backends=lambda d: Neo4jGraphBackend(d, driver=server))  # type: ignore[arg-type]


async def row(deps: Deps, project: Project) -> Project:
    found = await deps.store.get_project(project.id)
    assert found is not None
    return found


async def create(env: ActivityEnvironment, graph: GraphActivities, project: Project) -> StepResult:
    return await env.run(graph.create_graph_database, StepInput(str(project.id)))


async def wait(env: ActivityEnvironment, graph: GraphActivities, project: Project) -> StepResult:
    return await env.run(graph.wait_graph_database_online, StepInput(str(project.id)))


# -------------------------------------------------------------------------------- enterprise
async def test_enterprise_creates_database_user_role_and_grants(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = FakeNeo4j()
    project = await new_project(deps, tenant_name)
    name, under = project.name, project.name.replace("-", "_")

    result = await create(env, activities(deps, server), project)

    password = await deps.credentials.get(project.id, GRAPH_PASSWORD)
    db, user, role = f"`tf-{name}`", f"`tf_{under}`", f"`tf_{under}_rw`"
    assert [(c.cypher, c.params, c.database) for c in server.calls] == [
        ("CALL dbms.components() YIELD edition RETURN edition", {}, "system"),
        (f"CREATE DATABASE {db} IF NOT EXISTS", {}, "system"),
        (f"CREATE USER {user} IF NOT EXISTS SET PASSWORD $password CHANGE NOT REQUIRED",
         {"password": password}, "system"),
        (f"CREATE ROLE {role} IF NOT EXISTS", {}, "system"),
        (f"GRANT ACCESS ON DATABASE {db} TO {role}", {}, "system"),
        (f"GRANT ALL GRAPH PRIVILEGES ON GRAPH {db} TO {role}", {}, "system"),
        (f"GRANT NAME MANAGEMENT ON DATABASE {db} TO {role}", {}, "system"),
        (f"GRANT INDEX MANAGEMENT ON DATABASE {db} TO {role}", {}, "system"),
        (f"GRANT CONSTRAINT MANAGEMENT ON DATABASE {db} TO {role}", {}, "system"),
        (f"GRANT ROLE {role} TO {user}", {}, "system"),
    ]
    assert result.status == "success"
    assert result.details == {"backend": "neo4j", "database": f"tf-{name}", "mode": "database-per-tenant",
                              "edition": "enterprise", "username": f"tf_{under}"}
    assert result.credential_refs == [GRAPH_PASSWORD]
    recorded = await row(deps, project)
    assert (recorded.graph_backend, recorded.graph_database, recorded.graph_mode, recorded.graph_uri,
            recorded.graph_username, recorded.graph_status) == (
        "neo4j", f"tf-{name}", "database-per-tenant", "bolt://neo4j.invalid:7687", f"tf_{under}",
        "provisioning")
    assert server.closed == 1
    steps = {s.step_name: s for s in await deps.store.get_steps(project.id)}
    for text in (repr(result), repr(steps), caplog.text):
        assert password not in text and ADMIN_PASSWORD not in text


async def test_enterprise_create_twice_repeats_idempotent_statements_with_the_same_password(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    first, second = FakeNeo4j(), FakeNeo4j()
    await create(env, activities(deps, first), project)
    await create(env, activities(deps, second), project)
    assert first.calls == second.calls  # same statements, same $password
    assert all("IF NOT EXISTS" in s for s in first.statements() if s.startswith("CREATE"))


async def test_status_moves_from_starting_to_online_heartbeating_each_poll(
    deps: Deps, env: ActivityEnvironment, heartbeats: list[Any], tenant_name: Callable[[], str]
) -> None:
    server = FakeNeo4j(statuses=["initial", "starting", "starting", "online"])
    project = await new_project(deps, tenant_name)
    graph = activities(deps, server)
    await create(env, graph, project)

    result = await wait(env, graph, project)

    polls = [c for c in server.calls if c.cypher.startswith("SHOW DATABASES")]
    assert [(c.cypher, c.params, c.database) for c in polls[:1]] == [(
        "SHOW DATABASES YIELD name, currentStatus, statusMessage WHERE name = $name",
        {"name": f"tf-{project.name}"}, "system",
    )]
    assert len(polls) == 4 and result.details["polls"] == 4
    assert result.details["status"] == "online" and result.details["mode"] == "database-per-tenant"
    seen = [beat[0]["seen"] for beat in heartbeats if beat and isinstance(beat[0], dict)]
    assert seen == ["initial", "starting", "starting", "online"]
    assert (await row(deps, project)).graph_status == "online"


async def test_quarantined_database_fails_at_once_non_retryably_with_the_status_message(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    server = FakeNeo4j(statuses=["starting", "quarantined"],
                       status_message="Database failed to start: store is corrupt")
    project = await new_project(deps, tenant_name)
    graph = activities(deps, server)
    await create(env, graph, project)

    with pytest.raises(ApplicationError) as failed:
        await wait(env, graph, project)

    err = failed.value
    assert err.non_retryable and err.type == "GraphDatabaseFailed"
    assert "quarantined" in err.message and "store is corrupt" in err.message
    assert (await row(deps, project)).graph_status == "failed"
    steps = {s.step_name: s for s in await deps.store.get_steps(project.id)}
    step = steps["wait_graph_database_online"]
    assert step.status == "running" and step.error_details is not None  # the workflow writes failed
    assert step.error_details["status_message"] == "Database failed to start: store is corrupt"


async def test_wait_gives_up_after_the_timeout_saying_what_it_last_saw(
    neo4j_settings: Callable[..., Settings], env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    deps = Deps.from_settings(neo4j_settings(graph_wait_timeout_seconds=0.35))
    try:
        server = FakeNeo4j(statuses=["store copying"])
        project = await new_project(deps, tenant_name)
        graph = activities(deps, server)
        await create(env, graph, project)

        with pytest.raises(ApplicationError) as failed:
            await wait(env, graph, project)

        err = failed.value
        assert err.non_retryable and err.type == "GraphDatabaseFailed"
        assert "not online after" in err.message and "timeout 0.35s" in err.message
        assert "last status seen: store copying" in err.message
        assert (await row(deps, project)).graph_status == "failed"
    finally:
        await deps.aclose()


async def test_an_outage_during_the_wait_is_polled_through(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    down = neo4j_exc.ServiceUnavailable("Couldn't connect to neo4j.invalid:7687")
    server = FakeNeo4j(statuses=[down, down, "online"])
    project = await new_project(deps, tenant_name)
    graph = activities(deps, server)
    await create(env, graph, project)
    assert (await wait(env, graph, project)).details["polls"] == 3


async def test_an_outage_lasting_past_the_deadline_is_retryable(
    neo4j_settings: Callable[..., Settings], env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    deps = Deps.from_settings(neo4j_settings(graph_wait_timeout_seconds=0.25))
    try:
        server = FakeNeo4j(statuses=[neo4j_exc.SessionExpired("connection lost")])
        project = await new_project(deps, tenant_name)
        graph = activities(deps, server)
        await create(env, graph, project)
        with pytest.raises(ApplicationError) as failed:
            await wait(env, graph, project)
        assert not failed.value.non_retryable and failed.value.type == "ServiceUnavailable"
        assert (await row(deps, project)).graph_status == "provisioning"
    finally:
        await deps.aclose()


# ------------------------------------------------------------------------- errors and fallback
async def test_unsupported_administration_command_falls_back_to_community(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    server = FakeNeo4j(fail={"CREATE DATABASE": server_error(
        UNSUPPORTED, "Unsupported administration command: CREATE DATABASE")})
    project = await new_project(deps, tenant_name)
    label = "`Tenant_" + project.name.replace("-", "_") + "`"

    result = await create(env, activities(deps, server), project)

    assert server.statements()[1].startswith("CREATE DATABASE")
    assert not any(s.startswith(("CREATE USER", "GRANT")) for s in server.statements())
    assert [(c.cypher, c.params, c.database) for c in server.calls[2:]] == [
        ("SHOW DATABASES YIELD name, `default` WHERE `default` = true RETURN name", {}, "system"),
        ("CREATE CONSTRAINT tenantflow_tenant_name IF NOT EXISTS "
         "FOR (t:TenantflowTenant) REQUIRE t.name IS UNIQUE", {}, "neo4j"),
        ("MERGE (t:TenantflowTenant {name: $name}) ON CREATE SET t.label = $label",
         {"name": project.name, "label": label.strip("`")}, "neo4j"),
    ]
    assert result.details["mode"] == "community-fallback" and result.details["label"] == label
    recorded = await row(deps, project)
    assert (recorded.graph_mode, recorded.graph_database, recorded.graph_username) == (
        "community-fallback", "neo4j", "neo4j")
    assert await deps.credentials.get(project.id, GRAPH_PASSWORD) == ADMIN_PASSWORD

    await wait(env, activities(deps, server), project)  # polls the shared default database
    assert server.calls[-1].params == {"name": "neo4j"}


async def test_community_edition_never_tries_to_create_a_database(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    server = FakeNeo4j(edition="community")
    project = await new_project(deps, tenant_name)
    result = await create(env, activities(deps, server), project)
    assert result.details["mode"] == "community-fallback" and result.details["edition"] == "community"
    assert not any(s.startswith(("CREATE DATABASE", "CREATE USER", "GRANT")) for s in server.statements())


async def test_refused_statement_is_non_retryable_with_its_code(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    code = "Neo.ClientError.Security.Forbidden"
    server = FakeNeo4j(fail={"CREATE DATABASE": server_error(code, "Permission denied.")})
    project = await new_project(deps, tenant_name)
    with pytest.raises(ApplicationError) as failed:
        await create(env, activities(deps, server), project)
    assert failed.value.non_retryable and failed.value.type == "ConfigurationError"
    step = {s.step_name: s for s in await deps.store.get_steps(project.id)}["create_graph_database"]
    assert step.error_details is not None and step.error_details["code"] == code


async def test_server_unavailable_on_create_is_retryable(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    server = FakeNeo4j(fail={"CALL dbms.components()": neo4j_exc.ServiceUnavailable("refused")})
    project = await new_project(deps, tenant_name)
    with pytest.raises(ApplicationError) as failed:
        await create(env, activities(deps, server), project)
    assert not failed.value.non_retryable and failed.value.type == "ServiceUnavailable"


async def test_transient_server_error_is_retryable(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    busy = server_error("Neo.TransientError.General.DatabaseUnavailable", "database unavailable")
    server = FakeNeo4j(fail={"CREATE DATABASE": busy})
    project = await new_project(deps, tenant_name)
    with pytest.raises(ApplicationError) as failed:
        await create(env, activities(deps, server), project)
    assert not failed.value.non_retryable and failed.value.type == "ServiceUnavailable"


async def test_graph_backend_none_skips_both_steps(
    make_settings: Callable[..., Settings], env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    deps = Deps.from_settings(make_settings(graph_backend="none"))
    try:
        project = await new_project(deps, tenant_name)
        graph = GraphActivities(deps)
        assert (await create(env, graph, project)).status == "skipped"
        assert (await wait(env, graph, project)).status == "skipped"
        assert (await row(deps, project)).graph_status is None
    finally:
        await deps.aclose()


# ------------------------------------------------------------------------------------ dropping
async def drop(env: ActivityEnvironment, graph: GraphActivities, project: Project) -> StepResult:
    return await env.run(graph.drop_graph_database, StepInput(str(project.id)))


async def test_enterprise_drop_drops_database_user_and_role(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    await deps.store.ensure_steps(project.id, PROJECT_TEARDOWN_STEP_NAMES)
    await create(env, activities(deps, FakeNeo4j()), project)
    server = FakeNeo4j()
    name, under = project.name, project.name.replace("-", "_")

    result = await drop(env, activities(deps, server), project)

    # The row says database-per-tenant: no edition probe, exactly these statements.
    assert [(c.cypher, c.params, c.database) for c in server.calls] == [
        (f"DROP DATABASE `tf-{name}` IF EXISTS", {}, "system"),
        (f"DROP USER `tf_{under}` IF EXISTS", {}, "system"),
        (f"DROP ROLE `tf_{under}_rw` IF EXISTS", {}, "system"),
    ]
    assert result.status == "success"
    assert result.details == {"backend": "neo4j", "mode": "database-per-tenant", "database": f"tf-{name}",
                              "username": f"tf_{under}", "role": f"tf_{under}_rw",
                              "credentials_deleted": [GRAPH_PASSWORD]}
    recorded = await row(deps, project)
    assert recorded.graph_status == "deleted" and recorded.graph_database == f"tf-{name}"
    assert await deps.credentials.find(project.id, GRAPH_PASSWORD) is None
    assert server.closed == 1

    again = FakeNeo4j()
    assert (await drop(env, activities(deps, again), project)).status == "success"
    assert again.calls == server.calls  # the same IF EXISTS statements: nothing left to drop


async def test_enterprise_drop_of_a_tenant_never_created_asks_the_edition_first(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    server = FakeNeo4j()
    result = await drop(env, activities(deps, server), project)
    assert result.status == "success"
    assert server.statements() == [
        "CALL dbms.components() YIELD edition RETURN edition",
        f"DROP DATABASE `tf-{project.name}` IF EXISTS",
        f"DROP USER `tf_{project.name}` IF EXISTS",
        f"DROP ROLE `tf_{project.name}_rw` IF EXISTS",
    ]
    assert (await row(deps, project)).graph_status == "deleted"


async def test_community_fallback_drop_deletes_labelled_nodes_then_the_registry_node(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    await create(env, activities(deps, FakeNeo4j(edition="community")), project)
    server = FakeNeo4j(edition="community")
    label = "`Tenant_" + project.name + "`"

    result = await drop(env, activities(deps, server), project)

    assert [(c.cypher, c.params, c.database) for c in server.calls] == [
        (f"MATCH (n:{label}) WITH n LIMIT $batch DETACH DELETE n RETURN count(n) AS deleted",
         {"batch": 10_000}, "neo4j"),
        ("MATCH (t:TenantflowTenant {name: $name}) DETACH DELETE t RETURN count(t) AS deleted",
         {"name": project.name}, "neo4j"),
    ]
    assert result.details["mode"] == "community-fallback" and result.details["label"] == label
    assert await deps.credentials.find(project.id, GRAPH_PASSWORD) is None
    assert (await row(deps, project)).graph_status == "deleted"


async def test_drop_falls_back_to_community_when_the_server_cannot_drop_databases(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    server = FakeNeo4j(fail={"DROP DATABASE": server_error(
        UNSUPPORTED, "Unsupported administration command: DROP DATABASE")})
    result = await drop(env, activities(deps, server), project)
    assert result.details["mode"] == "community-fallback"
    assert not any(s.startswith(("DROP USER", "DROP ROLE")) for s in server.statements())


async def test_drop_refused_by_the_server_is_non_retryable_and_keeps_the_password(
    deps: Deps, env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    await create(env, activities(deps, FakeNeo4j()), project)
    server = FakeNeo4j(fail={"DROP DATABASE": server_error(
        "Neo.ClientError.Security.Forbidden", "Permission denied.")})
    with pytest.raises(ApplicationError) as failed:
        await drop(env, activities(deps, server), project)
    assert failed.value.non_retryable and failed.value.type == "ConfigurationError"
    assert await deps.credentials.find(project.id, GRAPH_PASSWORD) is not None
    assert (await row(deps, project)).graph_status == "provisioning"


async def test_drop_on_a_worker_configured_for_another_backend_refuses(
    make_settings: Callable[..., Settings], deps: Deps, env: ActivityEnvironment,
    tenant_name: Callable[[], str],
) -> None:
    project = await new_project(deps, tenant_name)
    await create(env, activities(deps, FakeNeo4j()), project)
    other = Deps.from_settings(make_settings(graph_backend="none"))
    try:
        with pytest.raises(ApplicationError) as failed:
            await drop(env, GraphActivities(other), project)
        assert failed.value.non_retryable and failed.value.type == "ConfigurationError"
        assert (await row(deps, project)).graph_status == "provisioning"
    finally:
        await other.aclose()


async def test_graph_backend_none_skips_the_drop(
    make_settings: Callable[..., Settings], env: ActivityEnvironment, tenant_name: Callable[[], str]
) -> None:
    deps = Deps.from_settings(make_settings(graph_backend="none"))
    try:
        project = await new_project(deps, tenant_name)
        result = await drop(env, GraphActivities(deps), project)
        assert result.status == "skipped"
        assert (await row(deps, project)).graph_status is None
    finally:
        await deps.aclose()
