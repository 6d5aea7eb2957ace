"""No orphans: tenants created (or deleted) while Temporal is down are answered 503, and their runs
are started by the workers' reconciler once Temporal is back, with no client retry. A Temporal dev
server of its own (the session's is shared), stopped and started on the same port and state file;
the worker is the real ``worker.py`` process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from devstack.ports import free_port
from devstack.temporal import TemporalDevServer
from tenantflow.settings import Settings
from tests.api.conftest import AUTH, open_api
from tests.e2e.test_project_provisioning import _spawn_worker, wait_status


@pytest.fixture
def own_temporal(tmp_path: Path) -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(tmp_path / "temporal.db", port=free_port(), ui_port=free_port(),
                               http_port=free_port(), metrics_port=free_port())
    server.start()
    yield server
    server.stop()


async def test_tenants_created_and_deleted_while_temporal_is_down_are_started_when_it_is_back(
    make_settings: Callable[..., Settings], own_temporal: TemporalDevServer, own_mirror: str,
    tenant_name: Any,
) -> None:
    # A mirror of its own: the reconciler acts on every tenant in it, and the shared one holds
    # other tests' leftovers (it once started hundreds of them and starved this test's runs).
    settings = make_settings(temporal_address=own_temporal.address, database_url=own_mirror,
                             reconcile_interval_seconds=0.5, reconcile_after_seconds=1.0)
    worker = None
    async with open_api(settings, headers=AUTH) as api:
        online = (await api.post("/v1/projects", json={"name": tenant_name()})).json()
        worker = _spawn_worker(settings)
        try:
            await wait_status(api, online["id"], "online")
            worker.terminate()
            worker.wait(timeout=20)
            own_temporal.stop()

            names = [tenant_name() for _ in range(5)]
            answers = await asyncio.gather(*(api.post("/v1/projects", json={"name": n}) for n in names))
            assert [a.status_code for a in answers] == [503] * 5, [a.text for a in answers]
            deleted = await api.delete(f"/v1/projects/{online['id']}")
            assert deleted.status_code == 503
            rows = [(await api.get(f"/v1/projects/{n}")).json() for n in names]
            # The rows exist, holding their names, with no run.
            assert [r["status"] for r in rows] == ["pending"] * len(names), rows

            own_temporal.start()
            worker = _spawn_worker(settings)
            ids = {r["name"]: r["id"] for r in rows}
            for name in names:
                await wait_status(api, ids[name], "online", timeout=120)
            await wait_status(api, online["id"], "deleted", timeout=120)
        finally:
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait()
    # Exactly one run each: the reconciler started it, nothing started a second one.
    client = await Client.connect(own_temporal.address)
    for name in names:
        runs = [w.id async for w in client.list_workflows(f'TenantId="{name}"')]
        assert len(runs) == 1, runs
