"""A project from POST to online on the real worker, Temporal dev server and Postgres: the step
rows, the tenant database, a failed run resumed by the retry signal, a worker killed mid-step,
and secrets kept out of the history and the API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from temporalio.client import Client

from activities.tenant_postgres import MIGRATION_LOCK_KEY
from devstack.postgres import PostgresServer
from tenantflow.catalog import PROJECT_STEP_NAMES
from tenantflow.names import tenant_db_name, tenant_role_name
from tenantflow.settings import Settings, to_env
from tests.api.conftest import AUTH, open_api
from tests.conftest import ROOT, eventually
from tests.e2e.history import activity_schedules, history_text, stored_secrets
from workflows.project import ProvisionProjectWorkflow

SECRET_KINDS = ("tenant_db_password", "jwt_secret", "anon_key", "service_role_key")


async def wait_status(api: httpx.AsyncClient, pid: str, status: str, timeout: float = 60) -> dict[str, Any]:
    """The project's body once it has ``status``; on timeout the error shows where it stood."""
    last: dict[str, Any] = {}

    async def check() -> dict[str, Any] | None:
        nonlocal last
        last = (await api.get(f"/v1/projects/{pid}")).json()
        return last if last.get("status") == status else None

    try:
        return await eventually(check, timeout=timeout, interval=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; wanted {status!r}, the project: {describe_project(last)}") from None


def describe_project(body: dict[str, Any]) -> str:
    """One line per step: what a stalled run's project looked like."""
    steps = "; ".join(
        f"{s.get('run_kind')}:{s['name']}={s['status']}"
        f" (retries {s.get('retry_count')}, error {s.get('error_message')!r})"
        for s in body.get("steps", [])
    )
    return f"status={body.get('status')!r} steps: {steps or body}"


def plant_schema_clash(pg: PostgresServer, name: str) -> None:
    """The fault: the tenant database already has a schema the first migration creates."""
    pg.create_database(tenant_db_name(name))
    with psycopg.connect(pg.url(tenant_db_name(name)), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TABLE app.organizations (x int)")


def remove_schema_clash(pg: PostgresServer, name: str) -> None:
    with psycopg.connect(pg.url(tenant_db_name(name)), autocommit=True) as conn:
        conn.execute("DROP SCHEMA app CASCADE")


def steps_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in body["steps"]}


async def hold_migration_lock(pg: PostgresServer, name: str) -> psycopg.AsyncConnection[Any]:
    """Make the tenant's create_tenant_schema block: a session holding its migration lock."""
    pg.create_database(tenant_db_name(name))
    blocker = await psycopg.AsyncConnection.connect(pg.url(tenant_db_name(name)), autocommit=True)
    await blocker.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    return blocker


async def wait_step(
    api: httpx.AsyncClient, pid: str, step: str, status: str, timeout: float = 60
) -> dict[str, Any]:
    """The project's body once its step ``step`` has ``status``."""

    async def check() -> dict[str, Any] | None:
        body = (await api.get(f"/v1/projects/{pid}")).json()
        row = steps_by_name(body).get(step)
        return body if row is not None and row["status"] == status else None  # rows come with the run

    result: dict[str, Any] = await eventually(check, timeout=timeout)
    return result


async def test_post_to_online_creates_a_tenant_database_the_tenant_can_use(
    make_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    temporal_client: Client,
) -> None:
    settings = make_settings()
    name = tenant_name()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        started = time.monotonic()
        created = await api.post("/v1/projects", json={"name": name})
        assert created.status_code == 202, created.text
        pid = created.json()["id"]
        body = await wait_status(api, pid, "online")
        elapsed = time.monotonic() - started

    steps = steps_by_name(body)
    assert [s["name"] for s in body["steps"]] == list(PROJECT_STEP_NAMES)
    for step in ("create_tenant_database", "create_tenant_schema", "generate_api_keys", "verify_services"):
        assert steps[step]["status"] == "success", steps[step]
        assert steps[step]["started_at"] and steps[step]["completed_at"]
    # Nothing configured for graph and services here: honest skips, with the reason.
    for step in ("create_graph_database", "register_auth_service"):
        assert steps[step]["status"] == "skipped"
        assert steps[step]["result"]["skip_reason"] and steps[step]["error_details"] is None
    print(f"POST -> online with Postgres steps only: {elapsed:.2f}s")

    [password] = await stored_secrets(settings, pid, "tenant_db_password")
    dsn = pg.url(tenant_db_name(name), user=tenant_role_name(name), password=password)
    with psycopg.connect(dsn) as conn:
        version = conn.execute("SELECT max(version) FROM tenantflow.tenantflow_migrations").fetchone()
        assert version is not None and version[0] >= 1
        conn.execute("SELECT count(*) FROM app.documents")

    # One run per tenant, findable by its TenantId search attribute.
    async def runs() -> list[Any]:
        return [w async for w in temporal_client.list_workflows(f'TenantId="{name}"')]

    assert len(await eventually(runs)) == 1


async def test_failed_run_waits_then_retry_signal_resumes_at_the_failed_step(
    make_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    temporal_client: Client,
) -> None:
    name = tenant_name()
    settings = make_settings(step_heartbeat_timeout_seconds=5)
    plant_schema_clash(pg, name)

    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        body = await wait_status(api, pid, "failed")
        steps = steps_by_name(body)
        assert steps["create_tenant_database"]["status"] == "success"
        failed = steps["create_tenant_schema"]
        assert failed["status"] == "failed"
        assert failed["error_message"] and failed["error_details"]["retryable"] is False
        assert failed["error_details"].get("sqlstate") == "42P06"  # duplicate_schema
        # The steps that need the schema wait for it; the keys need nothing of it and ran.
        for service in ("auth", "realtime", "storage"):
            assert steps[f"register_{service}_service"]["status"] == "pending"
        assert steps["verify_services"]["status"] == "pending"
        assert steps["generate_api_keys"]["status"] == "success"
        handle = temporal_client.get_workflow_handle(body["workflow_id"])
        assert (await handle.describe()).status.name == "RUNNING"  # type: ignore[union-attr]
        first_db_step = steps["create_tenant_database"]

        remove_schema_clash(pg, name)
        await handle.signal(ProvisionProjectWorkflow.retry, {"reason": "fixed", "requested_by": "test"})
        body = await wait_status(api, pid, "online")

    steps = steps_by_name(body)
    assert steps["create_tenant_schema"]["status"] == "success"
    assert steps["create_tenant_database"]["started_at"] == first_db_step["started_at"]
    scheduled = await activity_schedules(handle)
    assert scheduled["create_tenant_database"] == 1  # not run again
    assert scheduled["create_tenant_schema"] == 2  # the failed attempt and the retry
    assert scheduled["generate_api_keys"] == 1


async def test_api_retry_answers_409_when_nothing_failed_and_202_when_something_did(
    make_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
) -> None:
    name = tenant_name()
    settings = make_settings()
    plant_schema_clash(pg, name)
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        await wait_status(api, pid, "failed")
        remove_schema_clash(pg, name)
        retried = await api.post(f"/v1/projects/{pid}/retry", json={"reason": "schema clash removed"})
        assert retried.status_code == 202, retried.text
        assert "create_tenant_schema" in retried.text
        await wait_status(api, pid, "online")
        again = await api.post(f"/v1/projects/{pid}/retry", json={})
        assert again.status_code == 409
        assert again.json()["detail"]


def _spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {**os.environ, **to_env(settings)}
    return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def doomed_worker(settings: Settings) -> Iterator[Callable[[], None]]:
    """A real worker process for ``settings``; yields ``kill()`` (SIGKILL, then reaped). The
    process is killed on the way out whatever happened, so no test leaves a worker behind."""
    proc = _spawn_worker(settings)

    def kill() -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    try:
        yield kill
    finally:
        if proc.poll() is None:
            kill()


async def test_worker_killed_mid_step_a_new_worker_finishes_the_run(
    make_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    temporal_client: Client,
) -> None:
    name = tenant_name()
    settings = make_settings(step_heartbeat_timeout_seconds=2)
    blocker = await hold_migration_lock(pg, name)  # create_tenant_schema blocks mid-step
    doomed = _spawn_worker(settings)
    try:
        async with open_api(settings, headers=AUTH) as api:
            pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
            await wait_step(api, pid, "create_tenant_schema", "running")
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            await blocker.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
            async with run_worker(settings):
                body = await wait_status(api, pid, "online", timeout=90)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        await blocker.close()

    steps = steps_by_name(body)
    assert steps["create_tenant_schema"]["status"] == "success"
    assert steps["create_tenant_schema"]["retry_count"] >= 1  # the attempt lost with the worker
    with psycopg.connect(pg.url()) as conn:
        dbs = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                           (tenant_db_name(name),)).fetchone()
    assert dbs == (1,)
    handle = temporal_client.get_workflow_handle(body["workflow_id"])
    assert (await activity_schedules(handle))["create_tenant_database"] == 1


async def test_secrets_never_reach_history_or_api_responses(
    make_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, temporal_client: Client,
) -> None:
    settings = make_settings()
    name = tenant_name()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        body = await wait_status(api, pid, "online")
        responses = [
            (await api.get(path)).text
            for path in (f"/v1/projects/{pid}", f"/v1/projects/{pid}/steps", "/v1/projects?limit=100")
        ]
    secrets = await stored_secrets(settings, pid, *SECRET_KINDS)
    history = await history_text(temporal_client.get_workflow_handle(body["workflow_id"]))
    assert "create_tenant_database" in history  # the search does see the history
    for secret in secrets:
        assert len(secret) >= 16
        assert secret not in history
        for text in responses:
            assert secret not in text


@pytest.mark.parametrize("count", [25])
async def test_concurrent_posts_make_one_project(
    make_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, temporal_client: Client,
    count: int,
) -> None:
    settings = make_settings()
    name = tenant_name()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        answers = await asyncio.gather(*[
            api.post("/v1/projects", json={"name": name}, headers={"Idempotency-Key": f"k-{name}"})
            for _ in range(count)
        ])
        assert {a.status_code for a in answers} <= {200, 202}
        assert len({a.json()["id"] for a in answers}) == 1
        await wait_status(api, answers[0].json()["id"], "online")
