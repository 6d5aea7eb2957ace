"""The mirror tells the truth under the two things that used to make it lie, on real parts: a worker
paused past its heartbeat timeout that wakes up after another worker finished its step, and an
outage of the mirror's Postgres with runs in flight."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from devstack.postgres import PostgresServer
from tenantflow.catalog import PROJECT_STEP_NAMES
from tests.api.conftest import AUTH, open_api
from tests.conftest import eventually
from tests.e2e.conftest import fault, registrations
from tests.e2e.history import activity_schedules
from tests.e2e.test_project_provisioning import _spawn_worker, steps_by_name, wait_status
from workflows.project import ProvisionProjectWorkflow

STORAGE = "register_storage_service"


async def test_a_paused_worker_that_wakes_up_late_cannot_regress_the_row(
    full_settings: Callable[..., Any], run_worker: Any, tenant_name: Any, platform: str,
) -> None:
    settings = full_settings(step_heartbeat_timeout_seconds=2, service_timeout_seconds=3)
    name = tenant_name()
    # The first storage request hangs: attempt 1 is inside its HTTP call when the worker is paused.
    fault(platform, service="storage", kind="timeout", count=1)
    paused = _spawn_worker(settings)
    try:
        async with open_api(settings, headers=AUTH) as api:
            pid = (await api.post("/v1/projects", json={"name": name})).json()["id"]

            async def storage_attempt_1_running() -> bool:
                step = steps_by_name((await api.get(f"/v1/projects/{pid}")).json())[STORAGE]
                return step["status"] == "running" and step["attempt"] == 1

            await eventually(storage_attempt_1_running, timeout=60)
            paused.send_signal(signal.SIGSTOP)
            # Past the heartbeat timeout Temporal gives attempt 1 up; this worker runs attempt 2.
            async with run_worker(settings):
                body = await wait_status(api, pid, "online", timeout=90)
            before = steps_by_name(body)[STORAGE]
            # Attempt 2 or later: tasks handed to the paused worker's open polls also time out.
            assert before["status"] == "success" and before["attempt"] >= 2
            # Attempt 1 wakes up: its HTTP call has timed out meanwhile, so it reports a
            # retryable failure (or is cancelled by its heartbeat). Neither may reach the row.
            paused.send_signal(signal.SIGCONT)
            for _ in range(25):
                await asyncio.sleep(0.2)
                now = steps_by_name((await api.get(f"/v1/projects/{pid}")).json())[STORAGE]
                assert (now["status"], now["attempt"], now["error_message"]) == (
                    "success", before["attempt"], None)
            history = (await api.get(f"/v1/projects/{pid}/steps")).json()
    finally:
        if paused.poll() is None:
            paused.send_signal(signal.SIGCONT)
            paused.kill()
        paused.wait(timeout=10)
    attempts = steps_by_name(history)[STORAGE]["attempts"]
    assert attempts[0]["attempt"] == 1 and attempts[0]["outcome"] == "lost"
    assert attempts[-1]["outcome"] == "success"
    assert all(a["outcome"] in ("lost", "failed") for a in attempts[:-1])
    assert registrations(platform, name)["storage"] == 1


async def test_runs_in_flight_ride_out_a_30s_outage_of_the_mirror_postgres(
    full_settings: Callable[..., Any], run_worker: Any, tenant_name: Any, pg: PostgresServer,
    platform: str, temporal_client: Client,
) -> None:
    """Postgres (the mirror, the tenant databases and the stand-ins' store all live on it here)
    stops for 30 s with 5 runs in flight: every run reaches online without anyone pressing retry,
    no step is left running, and no step was marked failed on the way."""
    settings = full_settings()
    names = [tenant_name() for _ in range(5)]
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        pids = []
        for name in names:
            created = await api.post("/v1/projects", json={"name": name})
            assert created.status_code == 202, created.text
            pids.append(created.json()["id"])
        pg.stop()
        try:
            await asyncio.sleep(10)
            # What an operator sees meanwhile: the API says the mirror is unavailable, retry later.
            during = await api.get(f"/v1/projects/{pids[0]}")
            assert during.status_code == 503 and during.headers["Retry-After"]
            assert "mirror database" in during.json()["detail"]
            await asyncio.sleep(20)
        finally:
            pg.start()
        bodies = [await wait_status(api, pid, "online", timeout=150) for pid in pids]
        histories = [(await api.get(f"/v1/projects/{pid}/steps")).json() for pid in pids]
        states = [await temporal_client.get_workflow_handle(b["workflow_id"]).query(
            ProvisionProjectWorkflow.state) for b in bodies]
    assert [st.retries_requested for st in states] == [0] * 5
    for body, history in zip(bodies, histories, strict=True):
        assert {s["name"]: s["status"] for s in body["steps"]} == {n: "success" for n in PROJECT_STEP_NAMES}
        handle = temporal_client.get_workflow_handle(body["workflow_id"])
        assert (await activity_schedules(handle)).get("mark_step", 0) == 0  # never marked failed
        for step in history["steps"]:
            # The outage shows as retried attempts, never as a step waiting for a person.
            assert all(a["outcome"] in ("success", "failed", "lost") for a in step["attempts"])
            assert step["attempts"][-1]["outcome"] == "success"
    for name in names:
        assert registrations(platform, name) == {"auth": 1, "realtime": 1, "storage": 1}
