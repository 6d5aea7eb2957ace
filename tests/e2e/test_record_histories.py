"""The representative runs whose histories ``tests/workflows/test_replay.py`` replays, made on real
parts: each must replay on today's code right away (a workflow that cannot replay its own fresh
history is non-deterministic), and ``TENANTFLOW_RECORD_HISTORIES=1`` saves them as the fixtures.
Only new scenarios are recorded that way; see ``tests/workflows/replay.py``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHistory

from tenantflow.settings import Settings
from tenantflow.store import deprovision_workflow_id
from tests.api.conftest import AUTH, open_api
from tests.conftest import eventually
from tests.e2e.conftest import fault
from tests.e2e.test_project_provisioning import wait_status, wait_step
from tests.workflows.replay import LIFECYCLE_SCENARIOS, keep_as_fixture, replayer


async def test_representative_runs_replay_on_todays_code(
    full_settings: Callable[..., Settings], run_worker: Any, platform: str, temporal_client: Client,
) -> None:
    settings = full_settings(bulk_retry_batch_size=5, bulk_retry_pause_seconds=0.1)
    prefix = "r" + uuid.uuid4().hex[:6]
    runs: dict[str, str] = {}  # scenario -> workflow id

    async def create(api: httpx.AsyncClient, suffix: str) -> dict[str, Any]:
        return (await api.post("/v1/projects", json={"name": f"{prefix}-{suffix}"})).json()

    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        online = await create(api, "ok")
        await wait_status(api, online["id"], "online")
        runs["project-online"] = online["workflow_id"]
        runs["project-online-local-mirror"] = online["workflow_id"]  # recorded after that patch
        runs["project-online-parallel"] = online["workflow_id"]  # and after "parallel-steps"
        await api.delete(f"/v1/projects/{online['id']}")
        await wait_status(api, online["id"], "deleted")
        runs["project-deprovision"] = deprovision_workflow_id(
            uuid.UUID(online["id"]), "project", online["name"])

        fault(platform, service="storage", kind="status", status=400, count=0, message="quota exceeded")
        retried, deleted, *bulk = [await create(api, s) for s in ("retried", "deleted", "bulk1", "bulk2")]
        for tenant in (retried, deleted, *bulk):
            await wait_status(api, tenant["id"], "failed")
        runs["project-failed-waiting"] = retried["workflow_id"]
        waiting = await fetch(temporal_client, retried["workflow_id"])
        history = {"project-failed-waiting": waiting, "project-failed-waiting-parallel": waiting}
        httpx.delete(f"{platform}/_faults").raise_for_status()

        assert (await api.post(f"/v1/projects/{retried['id']}/retry")).status_code == 202
        await wait_status(api, retried["id"], "online")
        runs["project-retried"] = runs["project-retried-parallel"] = retried["workflow_id"]

        await api.delete(f"/v1/projects/{deleted['id']}")
        await wait_status(api, deleted["id"], "deleted")
        runs["project-failed-then-deleted"] = deleted["workflow_id"]
        runs["project-deprovision-of-failed"] = deprovision_workflow_id(
            uuid.UUID(deleted["id"]), "project", deleted["name"])

        started = await api.post("/v1/projects/retry-failed", json={"name_prefix": f"{prefix}-bulk"})
        operation = started.json()["operation_id"]
        await temporal_client.get_workflow_handle(operation).result()
        for tenant in bulk:
            await wait_status(api, tenant["id"], "online")
        runs["retry-failed-bulk"] = operation

        # Two steps side by side fail together, and are retried one after the other.
        fault(platform, service="auth", kind="status", status=400, count=0, message="no")
        fault(platform, service="storage", kind="status", status=400, count=0, message="no")
        both = await create(api, "both")
        await wait_step(api, both["id"], "register_auth_service", "failed")
        await wait_step(api, both["id"], "register_storage_service", "failed")
        httpx.delete(f"{platform}/_faults").raise_for_status()
        for _ in range(2):
            assert (await api.post(f"/v1/projects/{both['id']}/retry")).status_code == 202
            await eventually(lambda: _settled(api, both["id"]), timeout=60)
        await wait_status(api, both["id"], "online")
        runs["project-two-failed-retried-parallel"] = both["workflow_id"]

        fault(platform, service="storage", kind="timeout", count=1)  # the next storage call hangs
        mid_step = await create(api, "midstep")
        await wait_step(api, mid_step["id"], "register_storage_service", "running")
        await api.delete(f"/v1/projects/{mid_step['id']}")
        await wait_status(api, mid_step["id"], "deleted")
        runs["project-deleted-mid-step"] = runs["project-deleted-mid-step-parallel"] = mid_step["workflow_id"]

        user_id = uuid.uuid4()
        record = {"id": str(user_id), "email": "someone@example.com"}
        hook = {"Authorization": f"Bearer {settings.webhook_secret.get_secret_value()}"}
        signup = {"type": "INSERT", "table": "users", "schema": "auth", "record": record, "old_record": None}
        deletion = {**signup, "type": "DELETE", "record": None, "old_record": record}
        hook_url = "/v1/webhooks/auth/signup"
        runs["user-online"] = (await api.post(hook_url, json=signup, headers=hook)).json()["workflow_id"]
        runs["user-online-parallel"] = runs["user-online"]
        await wait_user(api, user_id, "ready")
        gone = await api.post(hook_url, json=deletion, headers=hook)
        runs["user-deprovision"] = gone.json()["workflow_id"]
        await wait_user(api, user_id, "deleted")

        for scenario, workflow_id in runs.items():
            if scenario not in history:
                history[scenario] = await fetch(temporal_client, workflow_id, finished=True)

    assert set(history) == set(LIFECYCLE_SCENARIOS)
    for scenario, recorded in history.items():
        result = await replayer().replay_workflow(recorded, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{scenario}: {result.replay_failure}"
    for scenario, recorded in history.items():
        keep_as_fixture(scenario, recorded)


async def fetch(client: Client, workflow_id: str, *, finished: bool = False) -> WorkflowHistory:
    handle = client.get_workflow_handle(workflow_id)
    if finished:
        await eventually(lambda: _closed(handle), timeout=30)
    return await handle.fetch_history()


async def _closed(handle: Any) -> bool:
    return (await handle.describe()).close_time is not None


async def wait_user(api: httpx.AsyncClient, user_id: uuid.UUID, wanted: str) -> None:
    async def check() -> bool:
        return (await api.get(f"/v1/users/{user_id}/status")).json()["status"] == wanted

    await eventually(check, timeout=60, interval=0.2)


async def _settled(api: httpx.AsyncClient, pid: str) -> bool:
    """The run waits for a person again, or is done."""
    return (await api.get(f"/v1/projects/{pid}")).json()["status"] in ("failed", "online")
