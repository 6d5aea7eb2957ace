"""All nine steps on real parts: Postgres, ArcadeDB and the platform stand-ins as real HTTP servers,
with faults injected the way a flaky service would fail."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import httpx
from temporalio.client import Client

from tenantflow.catalog import PROJECT_STEP_NAMES
from tenantflow.settings import Settings
from tests.api.conftest import AUTH, open_api
from tests.conftest import eventually
from tests.e2e.conftest import fault, registrations
from tests.e2e.history import activity_schedules, history_text, stored_secrets
from tests.e2e.test_project_provisioning import (
    SECRET_KINDS,
    _spawn_worker,
    steps_by_name,
    wait_status,
    wait_step,
)


async def test_all_nine_steps_succeed_and_each_service_holds_one_registration(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, platform: str,
    temporal_client: Client,
) -> None:
    settings = full_settings()
    name = tenant_name()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        body = await wait_status(api, pid, "online")
    assert {s["name"]: s["status"] for s in body["steps"]} == {n: "success" for n in PROJECT_STEP_NAMES}
    assert registrations(platform, name) == {"auth": 1, "realtime": 1, "storage": 1}
    secrets = await stored_secrets(settings, pid, *SECRET_KINDS, "graph_password")
    history = await history_text(temporal_client.get_workflow_handle(body["workflow_id"]))
    for secret in secrets:
        assert secret not in history and secret not in str(body)


async def test_5xx_is_retried_and_recorded_then_4xx_fails_until_retried(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, platform: str,
    temporal_client: Client,
) -> None:
    settings = full_settings()
    name = tenant_name()
    fault(platform, service="auth", kind="status", status=503, count=2)
    fault(platform, service="storage", kind="status", status=400, count=0,
          message="bucket quota exceeded")
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        await wait_status(api, pid, "failed")
        # Auth, beside storage, goes on retrying its 503s while the run waits on storage.
        body = await wait_step(api, pid, "register_auth_service", "success")
        steps = steps_by_name(body)
        assert body["status"] == "failed"
        assert steps["register_auth_service"]["retry_count"] == 2  # two 503s, then success
        storage = steps["register_storage_service"]
        assert storage["status"] == "failed" and storage["retry_count"] == 0  # 4xx: not retried
        assert "bucket quota exceeded" in storage["error_message"]
        assert storage["error_details"]["status"] == 400
        assert steps["verify_services"]["status"] == "pending"

        httpx.delete(f"{platform}/_faults").raise_for_status()
        retried = await api.post(f"/v1/projects/{pid}/retry", json={"reason": "quota raised"})
        assert retried.status_code == 202, retried.text
        body = await wait_status(api, pid, "online")

    assert registrations(platform, name) == {"auth": 1, "realtime": 1, "storage": 1}
    scheduled = await activity_schedules(temporal_client.get_workflow_handle(body["workflow_id"]))
    assert scheduled["register_auth_service"] == 1 and scheduled["register_storage_service"] == 2


async def test_registrations_that_fail_side_by_side_wait_their_turn_for_a_retry(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, platform: str,
) -> None:
    settings = full_settings()
    name = tenant_name()
    fault(platform, service="auth", kind="status", status=400, count=0, message="auth says no")
    fault(platform, service="storage", kind="status", status=400, count=0, message="bucket quota exceeded")
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
        await wait_status(api, pid, "failed")
        # Both rows show their failure at once; realtime, beside them, succeeded.
        body = await wait_step(api, pid, "register_auth_service", "failed")
        body = await wait_step(api, pid, "register_storage_service", "failed")
        steps = steps_by_name(body)
        assert steps["register_realtime_service"]["status"] == "success"
        assert steps["verify_services"]["status"] == "pending"
        httpx.delete(f"{platform}/_faults").raise_for_status()

        # The run names one failed step at a time: a retry resumes it, then the run stops at the other.
        first = await api.post(f"/v1/projects/{pid}/retry", json={"reason": "fixed"})
        assert first.status_code == 202, first.text
        resumed = first.json()["retrying_step"]
        other = ({"register_auth_service", "register_storage_service"} - {resumed}).pop()
        body = await wait_step(api, pid, resumed, "success")
        body = await wait_status(api, pid, "failed")
        assert steps_by_name(body)[other]["status"] == "failed"
        second = await api.post(f"/v1/projects/{pid}/retry", json={"reason": "fixed"})
        assert second.status_code == 202, second.text
        assert second.json()["retrying_step"] == other
        body = await wait_status(api, pid, "online")
    assert registrations(platform, name) == {"auth": 1, "realtime": 1, "storage": 1}


async def test_worker_dies_after_the_registration_call_succeeded_no_duplicate(
    full_settings: Callable[..., Settings], run_worker: Any, tenant_name: Any, platform: str,
) -> None:
    settings = full_settings(step_heartbeat_timeout_seconds=2, service_timeout_seconds=30)
    name = tenant_name()
    # The realtime service stores the tenant, then never answers: the worker dies waiting.
    fault(platform, service="realtime", kind="timeout", phase="after", match="write", count=1)
    doomed = _spawn_worker(settings)
    try:
        async with open_api(settings, headers=AUTH) as api:
            pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]
            await eventually(lambda: registrations(platform, name)["realtime"] == 1, timeout=60)
            body = (await api.get(f"/v1/projects/{pid}")).json()
            assert steps_by_name(body)["register_realtime_service"]["status"] == "running"
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=10)
            async with run_worker(settings):
                body = await wait_status(api, pid, "online", timeout=90)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    realtime = steps_by_name(body)["register_realtime_service"]
    assert realtime["status"] == "success" and realtime["retry_count"] >= 1
    assert registrations(platform, name) == {"auth": 1, "realtime": 1, "storage": 1}
