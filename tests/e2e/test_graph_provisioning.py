"""Graph databases end to end: projects and signed-up users get their own database on a real
ArcadeDB (Bolt) or on the Aura API emulator, through the API, the real worker and Temporal."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from activities.deps import Deps
from devstack.arcadedb import ArcadeDBServer
from standins.aura_emulator import AuraEmulator, EmulatorConfig
from standins.server import ThreadedServer
from tenantflow.graph_clients import graph_client_for, graph_client_for_user
from tenantflow.names import user_project_name
from tenantflow.settings import Settings
from tenantflow.store import workflow_id_for
from tests.api.conftest import AUTH, open_api
from tests.conftest import eventually
from tests.e2e.history import activity_schedules, history_text, stored_secrets
from tests.e2e.test_project_provisioning import steps_by_name, wait_status
from workflows.base import ProvisioningWorkflow

WEBHOOK_SECRET = "test-webhook-secret-0123456789"


def signup(user_id: uuid.UUID) -> dict[str, Any]:
    return {"type": "INSERT", "table": "users", "schema": "auth",
            "record": {"id": str(user_id), "email": "someone@example.com"}, "old_record": None}


async def deliver(api: httpx.AsyncClient, user_id: uuid.UUID) -> httpx.Response:
    return await api.post("/v1/webhooks/auth/signup", json=signup(user_id),
                          headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})


async def wait_user(api: httpx.AsyncClient, user_id: uuid.UUID, status: str,
                    timeout: float = 60) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        r = await api.get(f"/v1/users/{user_id}/status", headers=AUTH)
        return r.json() if r.status_code == 200 and r.json()["status"] == status else None

    return await eventually(check, timeout=timeout, interval=0.2)


def arcade_databases(server: ArcadeDBServer) -> list[str]:
    r = httpx.get(f"{server.http_url}/api/v1/databases", auth=("root", server.password))
    r.raise_for_status()
    return list(r.json()["result"])


@pytest.fixture
def arcade_settings(make_settings: Callable[..., Settings], arcadedb: ArcadeDBServer) -> Settings:
    return make_settings(graph_backend="arcadedb", arcadedb_http_url=arcadedb.http_url,
                         arcadedb_bolt_uri=arcadedb.bolt_uri, arcadedb_password=arcadedb.password)


# ------------------------------------------------------------------------------------ ArcadeDB
async def test_each_project_gets_its_own_graph_database(
    arcade_settings: Settings, run_worker: Any, tenant_name: Any, arcadedb: ArcadeDBServer,
) -> None:
    names = [tenant_name(), tenant_name()]
    async with run_worker(arcade_settings), open_api(arcade_settings, headers=AUTH) as api:
        ids = [(await api.post("/v1/projects", json={"name": n})).json()["id"] for n in names]
        bodies = [await wait_status(api, pid, "online") for pid in ids]

    for body in bodies:
        steps = steps_by_name(body)
        assert steps["create_graph_database"]["status"] == "success"
        assert steps["wait_graph_database_online"]["status"] == "success"
        assert body["graph"]["backend"] == "arcadedb" and body["graph"]["status"] == "online"
        assert body["graph"]["database"] in arcade_databases(arcadedb)
        assert arcadedb.password not in str(body)

    deps = Deps.from_settings(arcade_settings)
    try:
        async with graph_client_for(ids[0], store=deps.store, credentials=deps.credentials) as a:
            await a.run("CREATE (:Note {text: $text})", text="only for A")
            assert len(await a.run("MATCH (n:Note) RETURN n.text AS text")) == 1
        async with graph_client_for(ids[1], store=deps.store, credentials=deps.credentials) as b:
            assert await b.run("MATCH (n:Note) RETURN n.text AS text") == []
    finally:
        await deps.aclose()


async def test_signup_webhook_gives_the_user_a_ready_graph_database(
    arcade_settings: Settings, run_worker: Any, arcadedb: ArcadeDBServer, temporal_client: Client,
) -> None:
    user_id = uuid.uuid4()
    async with open_api(arcade_settings) as api:
        accepted = await deliver(api, user_id)
        assert accepted.status_code == 202, accepted.text
        # No worker yet: the app must block the user's queries.
        assert (await wait_user(api, user_id, "pending"))["status"] == "pending"
        deps = Deps.from_settings(arcade_settings)
        try:
            with pytest.raises(Exception) as refused:
                async with graph_client_for_user(user_id, store=deps.store, credentials=deps.credentials):
                    pass
            assert type(refused.value).__name__ == "NotReady"
            async with run_worker(arcade_settings):
                ready = await wait_user(api, user_id, "ready")
            async with graph_client_for_user(user_id, store=deps.store,
                                             credentials=deps.credentials) as graph:
                await graph.run("CREATE (:Prefs {theme: 'dark'})")
                rows = await graph.run("MATCH (p:Prefs) RETURN p.theme AS theme")
                assert rows == [{"theme": "dark"}]
        finally:
            await deps.aclose()
    assert {s["name"]: s["status"] for s in ready["steps"]} == {
        "create_graph_database": "success", "wait_graph_database_online": "success"}
    assert f"u-{user_id.hex}" in ready["graph"]["database"]
    assert ready["graph"]["database"] in arcade_databases(arcadedb)


async def test_twenty_concurrent_redeliveries_make_one_run_and_one_database(
    arcade_settings: Settings, run_worker: Any, arcadedb: ArcadeDBServer, temporal_client: Client,
) -> None:
    user_id = uuid.uuid4()
    async with run_worker(arcade_settings), open_api(arcade_settings) as api:
        answers = await asyncio.gather(*[deliver(api, user_id) for _ in range(20)])
        assert {a.status_code for a in answers} == {202}
        ready = await wait_user(api, user_id, "ready")
    assert arcade_databases(arcadedb).count(ready["graph"]["database"]) == 1

    async def runs() -> list[Any]:
        return [w async for w in temporal_client.list_workflows(f'TenantId="u-{user_id.hex}"')]

    await eventually(runs)
    await asyncio.sleep(0.5)
    assert len(await runs()) == 1


# ---------------------------------------------------------------------------------------- Aura
@pytest.fixture(scope="module")
def aura() -> Iterator[tuple[AuraEmulator, str]]:
    emulator = AuraEmulator(EmulatorConfig(polls_until_running=3))
    with ThreadedServer(emulator.app) as server:
        yield emulator, server.url


@pytest.fixture
def aura_settings(make_settings: Callable[..., Settings],
                  aura: tuple[AuraEmulator, str]) -> Callable[..., Settings]:
    emulator, url = aura
    emulator.reset()
    config = EmulatorConfig()

    def make(**overrides: Any) -> Settings:
        return make_settings(**{
            "graph_backend": "aura", "aura_api_url": url, "aura_client_id": config.client_id,
            "aura_client_secret": config.client_secret, "aura_tenant_id": config.tenant_ids[0],
            "aura_type": "professional-db", "aura_poll_interval_seconds": 0.05,
            "aura_poll_timeout_seconds": 10.0, **overrides})

    return make


async def test_aura_user_database_times_out_then_retry_signal_finishes_it(
    aura_settings: Callable[..., Settings], aura: tuple[AuraEmulator, str], run_worker: Any,
    temporal_client: Client,
) -> None:
    emulator, _ = aura
    emulator.configure(polls_until_running=10_000)  # stuck in "creating"
    settings = aura_settings(aura_poll_timeout_seconds=1.0)
    user_id = uuid.uuid4()
    async with run_worker(settings), open_api(settings) as api:
        assert (await deliver(api, user_id)).status_code == 202
        failed = await wait_user(api, user_id, "failed")
        steps = {s["name"]: s for s in failed["steps"]}
        assert steps["create_graph_database"]["status"] == "success"
        wait = steps["wait_graph_database_online"]
        assert wait["status"] == "failed"
        assert "creating" in wait["error_message"] and wait["error_details"]["retryable"] is False

        emulator.configure(polls_until_running=0)  # Aura caught up
        handle = temporal_client.get_workflow_handle(
            workflow_id_for(uuid.UUID(failed["project_id"]), "user", user_project_name(user_id)))
        await handle.signal(ProvisioningWorkflow.retry, {"reason": "aura is slow today"})
        ready = await wait_user(api, user_id, "ready")

    assert ready["graph"]["backend"] == "aura"
    assert ready["graph"]["uri"].startswith("neo4j+s://")
    assert ready["graph"]["http_uri"].startswith("https://")
    assert len(emulator.live_instances()) == 1  # the retry did not create a second instance
    scheduled = await activity_schedules(handle)
    assert scheduled["create_graph_database"] == 1
    assert scheduled["wait_graph_database_online"] == 2
    [password] = await stored_secrets(settings, ready["project_id"], "graph_password")
    assert password not in await history_text(handle)
    assert password not in str(ready)


async def test_aura_project_provisioned_with_the_nine_steps(
    aura_settings: Callable[..., Settings], aura: tuple[AuraEmulator, str], run_worker: Any,
    tenant_name: Any,
) -> None:
    emulator, _ = aura
    settings = aura_settings()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
        body = await wait_status(api, pid, "online")
    steps = steps_by_name(body)
    assert steps["create_graph_database"]["status"] == "success"
    assert steps["wait_graph_database_online"]["status"] == "success"
    assert steps["verify_services"]["status"] == "success"
    assert len(emulator.live_instances()) == 1
