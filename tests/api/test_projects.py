"""The project API against a real mirror database and Temporal dev server."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from temporalio.client import Client

from activities.deps import Deps
from api.main import create_app
from devstack.stack import settings_environment
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.models import ProjectKind
from tenantflow.settings import Settings
from tests.api.conftest import AUTH, ScriptedSteps, open_api, settled_workflow_count, workflow_count
from tests.conftest import API_TOKEN, ROOT, eventually

PROTECTED = [
    ("POST", "/v1/projects"),
    ("GET", "/v1/projects"),
    ("GET", f"/v1/projects/{uuid.uuid4()}"),
    ("GET", f"/v1/projects/{uuid.uuid4()}/steps"),
    ("POST", f"/v1/projects/{uuid.uuid4()}/retry"),
    ("GET", f"/v1/projects/{uuid.uuid4()}/connection"),
    ("GET", "/v1/projects/some-name/connection"),
    ("GET", f"/v1/users/{uuid.uuid4()}/status"),
]


async def project_status(api: httpx.AsyncClient, pid: str) -> str:
    return (await api.get(f"/v1/projects/{pid}")).json()["status"]


# -------------------------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {API_TOKEN}"},
     {"Authorization": f"Bearer {API_TOKEN}x"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "basic-scheme", "token-prefix", "empty"],
)
async def test_every_route_but_health_needs_the_api_token(
    anon: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, path in PROTECTED:
        response = await anon.request(method, path, headers=headers, json={"name": "valid-name"})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert API_TOKEN not in response.text
    assert (await anon.get("/healthz")).status_code == 200
    assert (await anon.get("/v1/webhooks/auth/health")).status_code == 200


async def test_health_reports_database_and_temporal(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "ok"}


async def test_health_is_503_when_the_mirror_database_is_unreachable(
    make_settings: Callable[..., Settings],
) -> None:
    dead = make_settings(database_url="postgresql://nobody:pw@127.0.0.1:9/nothing")
    async with open_api(dead) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable", "temporal": "ok"}
    assert "pw" not in response.text


async def test_openapi_documents_every_route(anon: httpx.AsyncClient) -> None:
    spec = (await anon.get("/openapi.json")).json()
    assert {"/healthz", "/v1/projects", "/v1/projects/{ref}", "/v1/projects/{ref}/steps",
            "/v1/projects/{ref}/retry", "/v1/projects/{ref}/connection", "/v1/users/{user_id}/status",
            "/v1/webhooks/auth/signup", "/v1/webhooks/auth/health"} <= set(spec["paths"])
    assert (await anon.get("/docs")).status_code == 200


# --------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ab", "3-40 characters"),
        ("a" * 41, "3-40 characters"),
        ("Acme", "lowercase"),
        ("has space", "lowercase"),
        ('a"; drop', "lowercase"),
        ("x'; DROP DATABASE postgres; --", "lowercase"),
        ("postgres", "reserved"),
        ("bad--name", "'--' is not allowed"),
        ("ends-", "not ending with '-'"),
        ("u-" + "0" * 32, "per-user tenants"),
    ],
)
async def test_invalid_names_are_rejected_with_the_rule(
    api: httpx.AsyncClient, name: str, expected: str
) -> None:
    response = await api.post("/v1/projects", json={"name": name})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "name"]
    assert "invalid project name" in error["msg"] and expected in error["msg"]


@pytest.mark.parametrize("body", [{}, {"name": 123}, {"name": None}, {"name": "okname", "extra": 1}])
async def test_malformed_bodies_are_422(api: httpx.AsyncClient, body: dict[str, Any]) -> None:
    assert (await api.post("/v1/projects", json=body)).status_code == 422


async def test_unknown_projects_are_404_by_id_or_name(api: httpx.AsyncClient) -> None:
    for ref in (str(uuid.uuid4()), "no-such-project", "not a uuid"):
        for method, suffix in [("GET", ""), ("GET", "/steps"), ("POST", "/retry"), ("GET", "/connection")]:
            response = await api.request(method, f"/v1/projects/{ref}{suffix}")
            assert response.status_code == 404, (method, ref, suffix)
            assert response.json()["detail"] == f"no project with id or name {ref!r}"


async def test_a_project_is_found_by_its_id_and_by_its_name(
    api: httpx.AsyncClient, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    created = (await api.post("/v1/projects", json={"name": name})).json()
    by_id = await api.get(f"/v1/projects/{created['id']}")
    by_name = await api.get(f"/v1/projects/{name}")
    assert by_id.status_code == by_name.status_code == 200
    assert by_id.json()["id"] == by_name.json()["id"] == created["id"]
    steps = (await api.get(f"/v1/projects/{name}/steps")).json()
    assert steps["project_id"] == created["id"]
    listed = [(s["name"], s["run_kind"]) for s in steps["steps"]]
    assert listed == [(n, "provision") for n in PROJECT_STEP_NAMES]


async def test_the_status_read_is_one_statement_with_the_same_answer_as_the_parts(
    settings: Settings, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    """``GET /v1/projects/{ref}`` (the most frequent request) reads the project and its steps in
    one statement on the status reads' pool (none through the engine), by id or by name, and says
    what the project and steps routes say."""
    app = create_app(settings)
    statements: list[str] = []
    async with app.router.lifespan_context(app):
        engine = app.state.store.engine.sync_engine
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        reads = app.state.reads
        fetch_value = reads.fetch_value

        async def counted(query: str, params: dict[str, Any]) -> Any:
            statements.append(query)
            return await fetch_value(query, params)

        reads.fetch_value = counted
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=AUTH) as api:
            name = tenant_name()
            created = (await api.post("/v1/projects", json={"name": name})).json()
            for ref in (created["id"], name):
                statements.clear()
                read = (await api.get(f"/v1/projects/{ref}")).json()
                assert len(statements) == 1 and statements[0].lstrip().startswith("SELECT"), statements
                steps = (await api.get(f"/v1/projects/{ref}/steps")).json()["steps"]
                assert [(s["name"], s["status"]) for s in read["steps"]] == [
                    (s["name"], s["status"]) for s in steps]
                assert read["id"] == created["id"] and read["name"] == name


async def test_teardown_steps_follow_the_provisioning_steps_in_catalog_order(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    project = (await deps.store.create_project(name=name, kind=ProjectKind.PROJECT,
                                               steps=PROJECT_STEP_NAMES)).project
    # Rows created in reverse: the order shown is the catalog's, not the rows'.
    for step in reversed(PROJECT_TEARDOWN_STEP_NAMES):
        await deps.store.ensure_steps(project.id, [step])
    steps = (await api.get(f"/v1/projects/{name}/steps")).json()["steps"]
    expected = [(n, "provision") for n in PROJECT_STEP_NAMES]
    expected += [(n, "deprovision") for n in PROJECT_TEARDOWN_STEP_NAMES]
    assert [(s["name"], s["run_kind"]) for s in steps] == expected


# ------------------------------------------------------------------------------------- create
async def test_create_starts_one_run_and_a_repeat_returns_the_same_project(
    api: httpx.AsyncClient, temporal_client: Client, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    first = await api.post("/v1/projects", json={"name": name})
    assert first.status_code == 202, first.text
    project = first.json()
    assert project["name"] == name and project["kind"] == "project" and project["status"] == "pending"
    assert [s["name"] for s in project["steps"]] == list(PROJECT_STEP_NAMES)
    assert first.headers["location"] == f"/v1/projects/{project['id']}"
    description = await temporal_client.get_workflow_handle(project["workflow_id"]).describe()
    assert description.status is not None and description.status.name == "RUNNING"

    again = await api.post("/v1/projects", json={"name": name})
    assert again.status_code == 200
    assert again.json()["id"] == project["id"]
    assert await settled_workflow_count(temporal_client, name) == 1


async def test_idempotency_key_returns_the_same_project_and_refuses_another_name(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    name, other = tenant_name(), tenant_name()
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first = await api.post("/v1/projects", json={"name": name}, headers=key)
    assert first.status_code == 202
    repeat = await api.post("/v1/projects", json={"name": name}, headers=key)
    assert repeat.status_code == 200 and repeat.json()["id"] == first.json()["id"]

    clash = await api.post("/v1/projects", json={"name": other}, headers=key)
    assert clash.status_code == 409
    assert "Idempotency-Key" in clash.json()["detail"] and name in clash.json()["detail"]
    assert await deps.store.find_existing(name=other, idempotency_key=None, external_user_id=None) is None


async def test_a_hundred_concurrent_identical_requests_make_one_project_and_one_run(
    api: httpx.AsyncClient, temporal_client: Client, tenant_name: Callable[[], str]
) -> None:
    name = tenant_name()
    key = {"Idempotency-Key": secrets.token_hex(8)}
    responses = await asyncio.gather(
        *(api.post("/v1/projects", json={"name": name}, headers=key) for _ in range(100))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 99 + [202]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.json()["workflow_id"] for r in responses}) == 1
    assert await settled_workflow_count(temporal_client, name) == 1


async def test_a_project_whose_start_was_lost_is_started_by_the_next_request(
    api: httpx.AsyncClient, deps: Deps, temporal_client: Client, tenant_name: Callable[[], str]
) -> None:
    # As if a request crashed between inserting the row and starting the workflow.
    name = tenant_name()
    orphan = (await deps.store.create_project(name=name, kind=ProjectKind.PROJECT,
                                              steps=PROJECT_STEP_NAMES)).project
    assert await workflow_count(temporal_client, name) == 0

    healed = await api.post("/v1/projects", json={"name": name})
    assert healed.status_code == 200 and healed.json()["id"] == str(orphan.id)
    description = await temporal_client.get_workflow_handle(orphan.workflow_id).describe()
    assert description.status is not None and description.status.name == "RUNNING"
    assert await settled_workflow_count(temporal_client, name) == 1


# --------------------------------------------------------------------------------------- read
async def test_list_is_paginated_by_cursor_and_bounded(
    make_settings: Callable[..., Settings], tenant_name: Callable[[], str]
) -> None:
    prefix = tenant_name()
    names = [f"{prefix}-{i}" for i in range(3)]
    async with open_api(make_settings(api_page_size_max=5), headers=AUTH) as api:
        for name in names:
            assert (await api.post("/v1/projects", json={"name": name})).status_code == 202
        first = (await api.get("/v1/projects", params={"limit": 2, "name_prefix": prefix})).json()
        assert [p["name"] for p in first["items"]] == names[:2]
        assert first["limit"] == 2 and first["next_cursor"] and "total" not in first and "offset" not in first
        last = (await api.get("/v1/projects", params={"limit": 2, "name_prefix": prefix,
                                                      "cursor": first["next_cursor"]})).json()
        assert [p["name"] for p in last["items"]] == names[2:]
        assert last["next_cursor"] is None

        too_big = await api.get("/v1/projects", params={"limit": 6})
        assert too_big.status_code == 422 and "at most 5" in too_big.json()["detail"]
        for bad in ({"limit": 0}, {"kind": "nope"}, {"status": "nope"}, {"failed_step": "nope"}):
            assert (await api.get("/v1/projects", params=bad)).status_code == 422, bad


async def test_responses_never_contain_secrets(
    api: httpx.AsyncClient, deps: Deps, settings: Settings, tenant_name: Callable[[], str]
) -> None:
    project = (await api.post("/v1/projects", json={"name": tenant_name()})).json()
    pid = uuid.UUID(project["id"])
    await deps.store.update_project(
        pid, graph_backend="neo4j", graph_mode="database", graph_database="tf-x",
        graph_uri="neo4j://127.0.0.1:7687", graph_http_uri="http://127.0.0.1:7474", graph_username="tenant_x",
    )
    plaintexts = [secrets.token_urlsafe(24) for _ in range(4)]
    for kind, secret in zip(["tenant_db_password", "graph_password", "jwt_secret", "service_role_key"],
                            plaintexts, strict=True):
        await deps.credentials.put(pid, kind, secret)

    bodies = [
        await api.get(f"/v1/projects/{pid}"),
        await api.get(f"/v1/projects/{pid}/steps"),
        await api.get("/v1/projects", params={"limit": 100, "name_prefix": project["name"]}),
        await api.post("/v1/projects", json={"name": project["name"]}),
    ]
    detail = bodies[0].json()
    assert detail["graph"] == {
        "backend": "neo4j", "mode": "database", "database": "tf-x", "status": None,
        "uri": "neo4j://127.0.0.1:7687", "http_uri": "http://127.0.0.1:7474", "username": "tenant_x",
    }
    forbidden = [
        *plaintexts, settings.api_token.get_secret_value(), settings.webhook_secret.get_secret_value(),
        settings.encryption_keys.get_secret_value().split(":", 1)[1],
    ]
    for response in bodies:
        assert response.status_code in (200, 202)
        assert not any(secret in response.text for secret in forbidden)
        assert "password" not in json.dumps(response.json()).lower()


# -------------------------------------------------------------------------------------- retry
async def test_retry_is_409_while_nothing_has_failed(
    api: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str]
) -> None:
    release = script.hold("create_tenant_database")
    project = (await api.post("/v1/projects", json={"name": tenant_name()})).json()
    await eventually(lambda: script.calls["create_tenant_database"] == 1)

    response = await api.post(f"/v1/projects/{project['id']}/retry", json={"reason": "impatient"})
    assert response.status_code == 409
    assert "nothing to retry" in response.json()["detail"]
    release.set()


async def test_retry_resumes_a_failed_step_and_is_409_once_the_run_has_finished(
    api: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str]
) -> None:
    script.fail_once.add("generate_api_keys")
    pid = (await api.post("/v1/projects", json={"name": tenant_name()})).json()["id"]

    async def failed() -> bool:
        return await project_status(api, pid) == "failed"

    await eventually(failed)
    steps = {s["name"]: s for s in (await api.get(f"/v1/projects/{pid}/steps")).json()["steps"]}
    assert steps["generate_api_keys"]["status"] == "failed"
    assert steps["generate_api_keys"]["error_message"] == "scripted failure"
    assert steps["register_auth_service"]["status"] == "pending"

    response = await api.post(f"/v1/projects/{pid}/retry")
    assert response.status_code == 202, response.text
    assert response.json() == {"retrying_step": "generate_api_keys"}

    async def online() -> bool:
        return await project_status(api, pid) == "online"

    await eventually(online)
    assert script.calls["generate_api_keys"] == 2 and script.calls["create_tenant_database"] == 1
    steps_after = (await api.get(f"/v1/projects/{pid}/steps")).json()["steps"]
    assert [s["name"] for s in steps_after] == list(PROJECT_STEP_NAMES)
    assert {s["status"] for s in steps_after} == {"skipped"}

    finished = await api.post(f"/v1/projects/{pid}/retry")
    assert finished.status_code == 409
    assert "finished" in finished.json()["detail"], finished.text
    # A repeat of a finished project's create returns it, without starting anything.
    name = (await api.get(f"/v1/projects/{pid}")).json()["name"]
    assert (await api.post("/v1/projects", json={"name": name})).status_code == 200


async def test_the_app_module_builds_without_settings_in_the_environment() -> None:
    from api import main

    assert main.app.title == "tenantflow"
    assert create_app().openapi()["info"]["title"] == "tenantflow"


def test_what_start_up_made_is_out_of_the_collectors_sight(settings: Settings) -> None:
    """Once the API has started, a full garbage collection no longer walks the objects of its
    modules and app (it took 85-95 ms with every request in flight waiting: the status read's
    p99): in a process of its own, as the API runs."""
    probe = (
        "import asyncio, gc, json\n"
        "from api.main import create_app\n"
        "from tenantflow.settings import Settings\n"
        "async def main():\n"
        "    app = create_app(Settings())\n"
        "    async with app.router.lifespan_context(app):\n"
        "        print(json.dumps([gc.get_freeze_count(), len(gc.get_objects())]))\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, **settings_environment(settings)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True, timeout=60).stdout
    frozen, tracked = json.loads(out.splitlines()[-1])
    assert frozen > 100_000 and tracked < frozen / 10, (frozen, tracked)
