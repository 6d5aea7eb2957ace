"""The status read (``GET /v1/projects/{ref}``) answers the document Postgres builds (api.documents):
it must be the document ``ProjectDetail.from_rows`` makes from the same rows, for tenants in every
state; an outage of the mirror is a 503 like everywhere else; a connection Postgres killed costs
no request its answer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import TypeAdapter
from sqlalchemy import insert

from activities.deps import Deps
from api.schemas import ProjectDetail
from devstack.postgres import PostgresServer
from tenantflow.catalog import (
    PROJECT_STEP_NAMES,
    PROJECT_TEARDOWN_STEP_NAMES,
    USER_STEP_NAMES,
    AttemptOutcome,
    ProjectKind,
    ProjectStatus,
    StepName,
)
from tenantflow.models import ProvisioningStep
from tenantflow.settings import Settings
from tenantflow.store import Fence, Store
from tests.api.conftest import AUTH, ScriptedSteps, open_api
from tests.conftest import eventually

DATETIME = TypeAdapter(datetime)
UNREACHABLE = {"detail": "the mirror database is unreachable (OperationalError)"}
GRAPH = dict(graph_backend="arcadedb", graph_mode="database-per-tenant", graph_database="tf-x",
             graph_status="online", graph_uri="bolt://127.0.0.1:7687", graph_http_uri=None,
             graph_username="root")


async def expected_document(store: Store, project_id: uuid.UUID) -> dict[str, Any]:
    """What the status read answered before Postgres built it: the model, from the rows."""
    project = await store.get_project(project_id)
    assert project is not None
    detail = ProjectDetail.from_rows(project, await store.get_steps(project_id))
    return json.loads(detail.model_dump_json())


def in_utc(document: Any, key: str = "") -> Any:
    """``document`` with its timestamps (keys ending in ``_at``) as UTC text: the same document
    whatever time zone the store's session reads them in."""
    if isinstance(document, dict):
        return {k: in_utc(v, k) for k, v in document.items()}
    if isinstance(document, list):
        return [in_utc(v) for v in document]
    if key.endswith("_at") and isinstance(document, str):
        return datetime.fromisoformat(document).astimezone(UTC).isoformat()
    return document


def timestamps(document: Any, key: str = "") -> list[str]:
    if isinstance(document, dict):
        return [t for k, v in document.items() for t in timestamps(v, k)]
    if isinstance(document, list):
        return [t for v in document for t in timestamps(v)]
    return [document] if key.endswith("_at") and isinstance(document, str) else []


async def assert_same_document(api: httpx.AsyncClient, store: Store, project_id: uuid.UUID,
                               *refs: str) -> dict[str, Any]:
    """Every ``ref`` reads the document the model makes: the same keys in the same order, the same
    values, the steps in the same order, each timestamp the text pydantic writes for it in UTC."""
    expected = await expected_document(store, project_id)
    for ref in refs or (str(project_id),):
        response = await api.get(f"/v1/projects/{ref}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        actual = response.json()
        # json.dumps keeps the keys' order: equal text means equal keys, order and values.
        assert json.dumps(in_utc(actual)) == json.dumps(in_utc(expected)), ref
        for text in timestamps(actual):
            assert text == DATETIME.dump_python(datetime.fromisoformat(text).astimezone(UTC), mode="json")
    return expected


async def finish(store: Store, project_id: uuid.UUID, step: str, *, result: dict[str, Any]) -> None:
    fence = Fence(0, 1)
    await store.attempt_started(project_id, step, fence)
    await store.attempt_finished(project_id, step, fence, outcome=AttemptOutcome.SUCCESS, result=result)


async def new_project(deps: Deps, name: str, *, kind: str = ProjectKind.PROJECT,
                      steps: tuple[StepName, ...] = PROJECT_STEP_NAMES) -> uuid.UUID:
    created = await deps.store.create_project(name=name, kind=kind, steps=steps)
    return created.project.id


# ----------------------------------------------------------------------------------- states
async def test_a_pending_tenant_by_id_and_by_name(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    pid = await new_project(deps, name)
    document = await assert_same_document(api, deps.store, pid, str(pid), name)
    assert document["status"] == "pending" and document["graph"] is None
    assert [s["name"] for s in document["steps"]] == list(PROJECT_STEP_NAMES)
    assert all(s["attempts"] is None and s["started_at"] is None for s in document["steps"])


async def test_an_online_tenant_with_results_and_graph(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    pid = await new_project(deps, name)
    for step in PROJECT_STEP_NAMES:
        await finish(deps.store, pid, step, result={
            "step": step, "nested": {"list": [1, 2.5, None, True], "text": 'quote " and \\ and \n and é ✓'}})
    await deps.store.update_project(pid, **GRAPH)
    await deps.store.set_project_status(pid, ProjectStatus.ONLINE)
    document = await assert_same_document(api, deps.store, pid, str(pid), name)
    assert document["status"] == "online" and document["graph"]["database"] == "tf-x"
    assert {s["status"] for s in document["steps"]} == {"success"}


async def test_a_failed_step_with_its_error_beside_results(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    pid = await new_project(deps, tenant_name())
    await finish(deps.store, pid, StepName.CREATE_TENANT_DATABASE, result={"database": "t_x"})
    fence = Fence(0, 1)
    storage = StepName.REGISTER_STORAGE_SERVICE
    await deps.store.attempt_started(pid, storage, fence)
    await deps.store.attempt_finished(
        pid, storage, fence, outcome=AttemptOutcome.FAILED, error_message="storage said no: 400 'quota'",
        error_details={"type": "ServiceRejected", "status": 400, "retryable": False})
    await deps.store.step_failed(pid, storage, generation=0, message="failed",
                                 details={"retry_state": "NON_RETRYABLE_FAILURE"})
    await deps.store.update_project(pid, graph_backend="neo4j")  # the graph half set: still shown
    await deps.store.set_project_status(pid, ProjectStatus.FAILED)
    document = await assert_same_document(api, deps.store, pid)
    failed = next(s for s in document["steps"] if s["name"] == storage)
    assert failed["status"] == "failed" and failed["error_details"]["retry_state"] == "NON_RETRYABLE_FAILURE"
    assert document["graph"] == {"backend": "neo4j", "mode": None, "database": None, "status": None,
                                 "uri": None, "http_uri": None, "username": None}


async def test_teardown_steps_and_unknown_steps_in_the_models_order(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    pid = await new_project(deps, tenant_name())
    # A step the catalog does not know (an older version's) and the teardown's rows, created in
    # reverse order: the catalog's order wins, the unknown step comes last.
    async with deps.store.engine.begin() as conn:
        await conn.execute(insert(ProvisioningStep.__table__).values(  # type: ignore[attr-defined]
            id=uuid.uuid4(), project_id=pid, step_name="legacy_step", status="success", retry_count=0,
            created_at=datetime(2020, 1, 1, 12, 0, 0, tzinfo=UTC), run_kind="provision"))
    for step in reversed(PROJECT_TEARDOWN_STEP_NAMES):
        await deps.store.ensure_steps(pid, [step])
    await finish(deps.store, pid, StepName.STOP_PROVISIONING, result={"cancelled": False})
    # Whole seconds: pydantic writes no fraction then.
    await deps.store.update_project(pid, created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    await deps.store.set_project_status(pid, ProjectStatus.DEPROVISIONING)
    document = await assert_same_document(api, deps.store, pid)
    assert [s["name"] for s in document["steps"]] == [
        *PROJECT_STEP_NAMES, *PROJECT_TEARDOWN_STEP_NAMES, "legacy_step"]
    assert document["created_at"] == "2026-01-02T03:04:05Z"


async def test_a_user_tenant(api: httpx.AsyncClient, deps: Deps) -> None:
    name = f"u-{uuid.uuid4().hex}"
    pid = await new_project(deps, name, kind=ProjectKind.USER, steps=USER_STEP_NAMES)
    await finish(deps.store, pid, StepName.CREATE_GRAPH_DATABASE, result={"database": name})
    await deps.store.update_project(pid, **GRAPH)
    document = await assert_same_document(api, deps.store, pid, str(pid), name)
    assert document["kind"] == "user" and [s["name"] for s in document["steps"]] == list(USER_STEP_NAMES)


async def test_a_name_reads_the_live_tenant_else_the_latest_deleted(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    first = await new_project(deps, name)
    await deps.store.mark_deleted(first, seq=None)
    await assert_same_document(api, deps.store, first, name)
    second = await new_project(deps, name)
    await assert_same_document(api, deps.store, second, name)
    await assert_same_document(api, deps.store, first, str(first))  # its id still reads it


async def test_a_run_through_the_workflow_reads_the_same(
    api: httpx.AsyncClient, deps: Deps, script: ScriptedSteps, tenant_name: Callable[[], str]
) -> None:
    """Rows written by the real step mechanism: a step failed and waiting, then online."""
    script.skip_all = False
    script.fail_once.add(StepName.REGISTER_AUTH_SERVICE)
    name = tenant_name()
    pid = uuid.UUID((await api.post("/v1/projects", json={"name": name})).json()["id"])

    async def status() -> str:
        return (await api.get(f"/v1/projects/{name}")).json()["status"]

    await eventually(lambda: _is(status, "failed"))
    await assert_same_document(api, deps.store, pid, str(pid), name)
    assert (await api.post(f"/v1/projects/{pid}/retry", json={})).status_code == 202
    await eventually(lambda: _is(status, "online"))
    await assert_same_document(api, deps.store, pid, str(pid), name)


async def _is(status: Callable[[], Any], wanted: str) -> bool:
    return await status() == wanted


@pytest.mark.parametrize("ref", [str(uuid.uuid4()), "no-such-tenant", "x'; select 1; --"])
async def test_an_unknown_ref_is_404(api: httpx.AsyncClient, ref: str) -> None:
    response = await api.get(f"/v1/projects/{ref}")
    assert response.status_code == 404
    assert response.json() == {"detail": f"no project with id or name {ref!r}"}


# ---------------------------------------------------------------------------------- failures
async def _admin(pg: PostgresServer, sql: str, *params: Any) -> None:
    async with await psycopg.AsyncConnection.connect(pg.url(), autocommit=True) as conn:
        await conn.execute(sql, params)


async def _kill_connections(pg: PostgresServer, database: str) -> int:
    """Terminate every client connection to ``database`` and wait until their backends are gone:
    what a restart does to them. Returns how many there were."""
    async with await psycopg.AsyncConnection.connect(pg.url(), autocommit=True) as conn:
        cursor = await conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [database])
        killed = [pid for (pid,) in await cursor.fetchall()]
        await conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [killed])

        async def gone() -> bool:
            cursor = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [killed])
            left = await cursor.fetchone()
            return left is not None and left[0] == 0

        await eventually(gone, timeout=10, interval=0.02)
    return len(killed)


@pytest.fixture
def own_settings(make_settings: Callable[..., Settings], own_mirror: str) -> Settings:
    """Settings on a mirror database of the test's own, which the test may cut off."""
    return make_settings(database_url=own_mirror)


def _database(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


async def test_connections_killed_under_the_pool_cost_no_request_its_answer(
    own_settings: Settings, pg: PostgresServer, tenant_name: Callable[[], str]
) -> None:
    """Every connection the API holds is terminated (as by a Postgres restart): the status read
    and the engine's routes all still answer, and so do the requests after them."""
    database = _database(own_settings.database_url.get_secret_value())
    deps = Deps.from_settings(own_settings)
    try:
        pid = await new_project(deps, tenant_name())
        async with open_api(own_settings, headers=AUTH) as api:
            paths = [f"/v1/projects/{pid}"] * 8 + [f"/v1/projects/{pid}/steps"] * 2
            for _ in range(3):
                answers = await asyncio.gather(*(api.get(path) for path in paths))  # several pooled
                assert [a.status_code for a in answers] == [200] * len(paths)
                assert await _kill_connections(pg, database) >= 2
            answers = await asyncio.gather(*(api.get(path) for path in paths))
            assert [a.status_code for a in answers] == [200] * len(paths)
            await assert_same_document(api, deps.store, pid)
    finally:
        await deps.aclose()


async def test_an_outage_of_the_mirror_is_a_503_then_reads_come_back(
    own_settings: Settings, pg: PostgresServer, tenant_name: Callable[[], str]
) -> None:
    database = _database(own_settings.database_url.get_secret_value())
    deps = Deps.from_settings(own_settings)
    try:
        name = tenant_name()
        pid = await new_project(deps, name)
        async with open_api(own_settings, headers=AUTH) as api:
            assert (await api.get(f"/v1/projects/{pid}")).status_code == 200
            await _admin(pg, f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            try:
                await _kill_connections(pg, database)
                for ref in (str(pid), name):
                    during = await api.get(f"/v1/projects/{ref}")
                    assert during.status_code == 503, during.text
                    assert during.headers["Retry-After"] == "5"
                    assert during.json() == UNREACHABLE
                    # The same answer the engine's routes give.
                    steps = await api.get(f"/v1/projects/{ref}/steps")
                    assert (steps.status_code, steps.json()) == (503, during.json())
            finally:
                await _admin(pg, f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
            await assert_same_document(api, deps.store, pid, str(pid), name)
    finally:
        await deps.aclose()


async def test_an_unreachable_mirror_is_a_503_without_its_url(make_settings: Callable[..., Settings]) -> None:
    dead = make_settings(database_url="postgresql://nobody:pw-in-url@127.0.0.1:9/nothing")
    async with open_api(dead, headers=AUTH) as api:
        response = await api.get(f"/v1/projects/{uuid.uuid4()}")
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.json() == UNREACHABLE
