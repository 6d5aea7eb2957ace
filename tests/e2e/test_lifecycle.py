"""A tenant's whole life on real parts: deprovisioning an online tenant, a failed-and-waiting one
and a half-made one leaves nothing behind and frees the name; a worker killed inside a teardown
step does not stop it; runs waiting for a person are found with TenantStatus and resumed in bulk;
a deleted user's webhook removes their tenant."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowExecutionStatus

from devstack.arcadedb import ArcadeDBServer
from devstack.postgres import PostgresServer
from tenantflow.catalog import PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.db import make_engine
from tenantflow.names import graph_db_name, tenant_db_name, tenant_role_name
from tenantflow.settings import Settings
from tests.api.conftest import AUTH, open_api
from tests.conftest import eventually
from tests.e2e.conftest import fault, registrations
from tests.e2e.test_project_provisioning import (
    doomed_worker,
    hold_migration_lock,
    steps_by_name,
    wait_status,
    wait_step,
)
from tests.stall_proxy import StallProxy


async def leftovers(settings: Settings, pg: PostgresServer, arcadedb: ArcadeDBServer, platform: str,
                    name: str, pid: str) -> dict[str, Any]:
    """Everything of the tenant that still exists anywhere (empty when it is all gone)."""
    found: dict[str, Any] = {}
    with psycopg.connect(pg.url()) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (tenant_db_name(name),)).fetchone():
            found["database"] = tenant_db_name(name)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (tenant_role_name(name),)).fetchone():
            found["role"] = tenant_role_name(name)
    listed = httpx.get(f"{arcadedb.http_url}/api/v1/databases", auth=("root", arcadedb.password)).json()
    if graph_db_name(name) in listed["result"]:
        found["graph"] = graph_db_name(name)
    if any(registrations(platform, name).values()):
        found["registrations"] = registrations(platform, name)
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as conn:
            kinds = (await conn.execute(text("SELECT kind FROM credentials WHERE project_id = :p"),
                                        {"p": uuid.UUID(pid)})).scalars().all()
    finally:
        await engine.dispose()
    if kinds:
        found["credentials"] = sorted(kinds)
    return found


async def test_deleting_an_online_tenant_removes_everything_and_frees_its_name(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    arcadedb: ArcadeDBServer, platform: str, temporal_client: Client,
) -> None:
    settings = full_settings()
    name = tenant_name()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        await wait_status(api, pid, "online")
        assert await leftovers(settings, pg, arcadedb, platform, name, pid) != {}
        deleting = await api.delete(f"/v1/projects/{name}")  # by name
        assert deleting.status_code == 202, deleting.text
        assert deleting.json()["status"] == "deprovisioning"
        body = await wait_status(api, pid, "deleted")
        again = await api.delete(f"/v1/projects/{pid}")
        assert again.status_code == 200 and again.json()["status"] == "deleted"
        assert await leftovers(settings, pg, arcadedb, platform, name, pid) == {}
        teardown = [s for s in body["steps"] if s["run_kind"] == "deprovision"]
        assert [s["name"] for s in teardown] == list(PROJECT_TEARDOWN_STEP_NAMES)
        assert all(s["status"] == "success" for s in teardown), teardown
        # The row stays for audit; the name is free for a new tenant.
        recreated = await api.post("/v1/projects", json={"name": name})
        assert recreated.status_code == 202, recreated.text
        new_pid = recreated.json()["id"]
        assert new_pid != pid
        await wait_status(api, new_pid, "online")
        assert (await api.get(f"/v1/projects/{name}")).json()["id"] == new_pid
        await api.delete(f"/v1/projects/{new_pid}")
        await wait_status(api, new_pid, "deleted")
    assert await leftovers(settings, pg, arcadedb, platform, name, new_pid) == {}


async def test_deleting_a_failed_and_waiting_tenant_cancels_its_run_and_removes_what_it_made(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    arcadedb: ArcadeDBServer, platform: str, temporal_client: Client,
) -> None:
    settings = full_settings()
    name = tenant_name()
    fault(platform, service="storage", kind="status", status=400, count=0, message="quota exceeded")
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        created = (await api.post("/v1/projects", json={"name": name})).json()
        await wait_status(api, created["id"], "failed")
        httpx.delete(f"{platform}/_faults").raise_for_status()
        cancelled = await api.post(f"/v1/projects/{name}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        await wait_status(api, created["id"], "deleted")
    provision = await temporal_client.get_workflow_handle(created["workflow_id"]).describe()
    assert provision.status == WorkflowExecutionStatus.CANCELED
    assert await leftovers(settings, pg, arcadedb, platform, name, created["id"]) == {}


async def test_a_failed_teardown_step_is_retried_through_the_api_and_the_deletion_finishes(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    arcadedb: ArcadeDBServer, platform: str,
) -> None:
    settings = full_settings()
    name = tenant_name()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        await wait_status(api, pid, "online")
        fault(platform, service="storage", kind="status", status=400, count=0, message="bucket locked")
        assert (await api.delete(f"/v1/projects/{name}")).status_code == 202
        failed = await wait_status(api, pid, "failed")
        assert steps_by_name(failed)["deregister_storage_service"]["status"] == "failed"
        httpx.delete(f"{platform}/_faults").raise_for_status()
        retried = await api.post(f"/v1/projects/{name}/retry", json={"reason": "unlocked"})
        assert retried.status_code == 202, retried.text
        assert retried.json() == {"retrying_step": "deregister_storage_service"}
        await wait_status(api, pid, "deleted")
    assert await leftovers(settings, pg, arcadedb, platform, name, pid) == {}


@pytest.mark.parametrize(
    "heartbeat_timeout",
    [3, 15],  # 3: the cancel reaches the step at its next heartbeat, within the storage call;
              # 15: the storage call times out (5 s) first, so the step fails after the cancel
)
async def test_deleting_a_tenant_while_a_step_runs_cancels_the_step_and_finishes(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    arcadedb: ArcadeDBServer, platform: str, temporal_client: Client, heartbeat_timeout: int,
) -> None:
    """A live worker is inside a step (storage hangs) when the tenant is deleted: the step is
    cancelled (or fails while the run is being cancelled), the provisioning run ends cancelled (not
    "failed, waiting for a retry", which left the deletion waiting forever), and the teardown
    removes everything."""
    settings = full_settings(step_heartbeat_timeout_seconds=heartbeat_timeout)
    name = tenant_name()
    fault(platform, service="storage", kind="timeout", count=1)  # hangs until the client hangs up
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        created = (await api.post("/v1/projects", json={"name": name})).json()
        await wait_step(api, created["id"], "register_storage_service", "running")
        assert (await api.delete(f"/v1/projects/{name}")).status_code == 202
        body = await wait_status(api, created["id"], "deleted", timeout=60)
    provision = await temporal_client.get_workflow_handle(created["workflow_id"]).describe()
    assert provision.status == WorkflowExecutionStatus.CANCELED
    storage = steps_by_name(body)["register_storage_service"]
    assert storage["status"] == "pending", storage  # never "failed": nobody is asked to retry it
    assert all(s["status"] not in ("running", "failed") for s in body["steps"]), body["steps"]
    httpx.delete(f"{platform}/_faults").raise_for_status()
    assert await leftovers(settings, pg, arcadedb, platform, name, created["id"]) == {}


async def test_a_tenant_whose_provisioning_died_mid_step_is_deleted_cleanly(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    arcadedb: ArcadeDBServer, platform: str,
) -> None:
    settings = full_settings(step_heartbeat_timeout_seconds=2)
    name = tenant_name()
    blocker = await hold_migration_lock(pg, name)  # create_tenant_schema blocks; the worker dies
    try:
        with doomed_worker(settings) as kill_worker:
            async with open_api(settings, headers=AUTH) as api:
                pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
                await wait_step(api, pid, "create_tenant_schema", "running")
                kill_worker()
                await blocker.close()  # its session (and the lock) goes; drop can terminate the rest
                async with run_worker(settings):
                    assert (await api.delete(f"/v1/projects/{pid}")).status_code == 202
                    body = await wait_status(api, pid, "deleted", timeout=90)
    finally:
        if not blocker.closed:
            await blocker.close()
    steps = steps_by_name(body)
    # Either the new worker's retry of the step finished before the cancel, or it was cancelled.
    schema = steps["create_tenant_schema"]
    assert schema["status"] == "success" or (
        schema["status"] == "pending" and "cancelled" in schema["error_message"]), schema
    assert all(s["status"] != "running" for s in body["steps"])
    assert await leftovers(settings, pg, arcadedb, platform, name, pid) == {}


@pytest.mark.parametrize("service", ["storage", "realtime", "auth"])
async def test_a_worker_killed_inside_a_teardown_step_does_not_stop_the_deletion(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    arcadedb: ArcadeDBServer, platform: str, service: str,
) -> None:
    settings = full_settings(step_heartbeat_timeout_seconds=2, service_timeout_seconds=30)
    name = tenant_name()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        await wait_status(api, pid, "online")
    # The service deletes the registration, then never answers: the worker dies waiting.
    fault(platform, service=service, kind="timeout", phase="after", match="write", count=1)
    with doomed_worker(settings) as kill_worker:
        async with open_api(settings, headers=AUTH) as api:
            assert (await api.delete(f"/v1/projects/{pid}")).status_code == 202
            await eventually(lambda: registrations(platform, name)[service] == 0, timeout=60)
            kill_worker()
            async with run_worker(settings):
                body = await wait_status(api, pid, "deleted", timeout=90)
    step = steps_by_name(body)[f"deregister_{service}_service"]
    assert step["status"] == "success" and step["retry_count"] >= 1  # the attempt lost with the worker
    assert await leftovers(settings, pg, arcadedb, platform, name, pid) == {}


async def test_tenant_status_lists_exactly_the_waiting_runs_and_bulk_retry_resumes_them(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, platform: str,
    temporal_client: Client,
) -> None:
    settings = full_settings(bulk_retry_batch_size=1, bulk_retry_pause_seconds=0.2)
    prefix = "b" + uuid.uuid4().hex[:6]
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        ok = (await api.post("/v1/projects", json={"name": f"{prefix}-ok"})).json()
        await wait_status(api, ok["id"], "online")
        fault(platform, service="storage", kind="status", status=400, count=0, message="quota exceeded")
        failing = [(await api.post("/v1/projects", json={"name": f"{prefix}-f{i}"})).json() for i in range(3)]
        for tenant in failing:
            await wait_status(api, tenant["id"], "failed")
        query = f'TenantStatus="failed" AND TenantId STARTS_WITH "{prefix}"'

        async def waiting() -> list[str]:
            return sorted([w.id async for w in temporal_client.list_workflows(query)])

        await eventually(lambda: _equals(waiting, sorted(t["workflow_id"] for t in failing)), timeout=30)
        # The Web UI shows the run's summary and its current details: what failed, how to retry.
        handle = temporal_client.get_workflow_handle(failing[0]["workflow_id"])
        description = await handle.describe()
        assert await description.static_summary() == f"provision project {prefix}-f0"
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert "`register_storage_service` failed" in metadata.current_details
        assert "quota exceeded" in metadata.current_details and "--name retry" in metadata.current_details

        dry = await api.post("/v1/projects/retry-failed",
                             json={"name_prefix": prefix, "failed_step": "register_storage_service",
                                   "dry_run": True})
        assert dry.status_code == 200 and dry.json()["matched"] == 3
        other = await api.post("/v1/projects/retry-failed",
                               json={"name_prefix": prefix, "failed_step": "create_tenant_database",
                                     "dry_run": True})
        assert other.json()["matched"] == 0
        httpx.delete(f"{platform}/_faults").raise_for_status()
        started = await api.post("/v1/projects/retry-failed", json={"name_prefix": prefix})
        assert started.status_code == 202, started.text
        for tenant in failing:
            await wait_status(api, tenant["id"], "online")
        operation = started.json()["operation_id"]
        status = (await api.get(f"/v1/projects/retry-failed/{operation}")).json()
        assert (status["matched"], status["retried"], status["done"]) == (3, 3, True)
        await eventually(lambda: _equals(waiting, []), timeout=30)


async def _equals(get: Callable[[], Any], expected: Any) -> bool:
    return await get() == expected


async def test_a_deleted_users_webhook_removes_their_tenant(
    full_settings: Callable[..., Settings], run_worker: Any, arcadedb: ArcadeDBServer,
) -> None:
    settings = full_settings()
    user_id = uuid.uuid4()
    record = {"id": str(user_id), "email": "someone@example.com"}
    hook = {"Authorization": f"Bearer {settings.webhook_secret.get_secret_value()}"}

    async def user_status(api: httpx.AsyncClient, wanted: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            body = (await api.get(f"/v1/users/{user_id}/status", headers=AUTH)).json()
            return body if body["status"] == wanted else None

        return await eventually(check, timeout=60, interval=0.2)

    async with run_worker(settings), open_api(settings) as api:
        signup = {"type": "INSERT", "table": "users", "schema": "auth", "record": record, "old_record": None}
        assert (await api.post("/v1/webhooks/auth/signup", json=signup, headers=hook)).status_code == 202
        ready = await user_status(api, "ready")
        database = ready["graph"]["database"]
        deletion = {"type": "DELETE", "table": "users", "schema": "auth", "record": None,
                    "old_record": record}
        accepted = await api.post("/v1/webhooks/auth/signup", json=deletion, headers=hook)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["workflow_id"].startswith("deprovision-user-")
        await user_status(api, "deleted")
        repeated = await api.post("/v1/webhooks/auth/signup", json=deletion, headers=hook)
        assert repeated.status_code == 200 and repeated.json()["ignored"] is True
    listed = httpx.get(f"{arcadedb.http_url}/api/v1/databases", auth=("root", arcadedb.password)).json()
    assert database not in listed["result"]


async def test_a_worker_killed_inside_delete_api_keys_does_not_stop_the_deletion(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    arcadedb: ArcadeDBServer, platform: str,
) -> None:
    settings = full_settings(step_heartbeat_timeout_seconds=2)
    name = tenant_name()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        await wait_status(api, pid, "online")
    # A session holding the tenant's credential rows makes delete_api_keys wait inside the step.
    holder = await psycopg.AsyncConnection.connect(settings.database_url.get_secret_value())
    await holder.execute("SELECT 1 FROM credentials WHERE project_id = %s FOR UPDATE", (uuid.UUID(pid),))
    try:
        with doomed_worker(settings) as kill_worker:
            async with open_api(settings, headers=AUTH) as api:
                assert (await api.delete(f"/v1/projects/{pid}")).status_code == 202
                await wait_step(api, pid, "delete_api_keys", "running")
                kill_worker()
                await holder.rollback()
                async with run_worker(settings):
                    body = await wait_status(api, pid, "deleted", timeout=90)
    finally:
        await holder.close()
    step = steps_by_name(body)["delete_api_keys"]
    assert step["status"] == "success" and step["retry_count"] >= 1  # the attempt lost with the worker
    assert await leftovers(settings, pg, arcadedb, platform, name, pid) == {}


@pytest.mark.parametrize("step", ["drop_graph_database", "drop_tenant_database"])
async def test_a_worker_killed_inside_a_drop_step_does_not_stop_the_deletion(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    arcadedb: ArcadeDBServer, platform: str, step: str,
) -> None:
    arcadedb_port = int(arcadedb.http_url.rsplit(":", 1)[1])
    async with StallProxy("127.0.0.1", pg.port) as pg_proxy, \
            StallProxy("127.0.0.1", arcadedb_port) as arcadedb_proxy:
        # The worker reaches the tenant cluster's admin login and ArcadeDB's HTTP API through
        # proxies that can hang, so the worker can be caught (and killed) inside either drop.
        settings = full_settings(
            step_heartbeat_timeout_seconds=2,
            tenant_pg_admin_url=pg.url().replace(f":{pg.port}/", f":{pg_proxy.port}/"),
            tenant_pg_public_port=pg.port,
            arcadedb_http_url=f"http://127.0.0.1:{arcadedb_proxy.port}",
        )
        name = tenant_name()
        async with run_worker(settings), open_api(settings, headers=AUTH) as api:
            pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
            await wait_status(api, pid, "online")
        hang = pg_proxy if step == "drop_tenant_database" else arcadedb_proxy
        hang.stall()
        with doomed_worker(settings) as kill_worker:
            async with open_api(settings, headers=AUTH) as api:
                assert (await api.delete(f"/v1/projects/{pid}")).status_code == 202
                await wait_step(api, pid, step, "running")
                kill_worker()
                hang.release()
                async with run_worker(settings):
                    body = await wait_status(api, pid, "deleted", timeout=90)
    row = steps_by_name(body)[step]
    assert row["status"] == "success" and row["retry_count"] >= 1  # the attempt lost with the worker
    assert await leftovers(settings, pg, arcadedb, platform, name, pid) == {}
