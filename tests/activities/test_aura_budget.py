"""The Aura account's request limit holds for all workers together: 50 tenants provisioned at once
by two workers (each its own Aura client, as two processes would have) against the emulator
enforcing the limit. The limit is scaled down in time (80 requests per 4 s instead of 125 per
minute) so the test takes seconds; the budget's arithmetic is the same for any window (a short
window makes the network's jitter count more, so this is the harder case)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.deps import Deps
from activities.graph.aura import AuraGraphBackend
from standins.aura_emulator import AuraEmulator, EmulatorConfig
from standins.server import ThreadedServer
from tenantflow.catalog import PROJECT_STEP_NAMES
from tenantflow.settings import Settings

LIMIT, WINDOW = 80, 4.0
CONFIG = EmulatorConfig(polls_until_running=2, rate_limit=LIMIT, rate_window_seconds=WINDOW)


@pytest.fixture
def emulator() -> Iterator[tuple[AuraEmulator, str]]:
    emu = AuraEmulator(CONFIG)
    with ThreadedServer(emu.app) as server:
        yield emu, server.url


async def test_fifty_tenants_at_once_never_exceed_the_accounts_limit(
    make_settings: Callable[..., Settings], emulator: tuple[AuraEmulator, str],
    tenant_name: Callable[[], str],
) -> None:
    emu, url = emulator
    settings = make_settings(
        graph_backend="aura", aura_api_url=url, aura_client_id=f"budget-{tenant_name()}",
        aura_client_secret=CONFIG.client_secret, aura_tenant_id=CONFIG.tenant_ids[0],
        aura_poll_interval_seconds=0.05, aura_poll_timeout_seconds=120.0,
        aura_rate_limit_requests=LIMIT, aura_rate_limit_window_seconds=WINDOW, aura_type="professional-db",
    )
    emu.configure(client_id=settings.aura_client_id)
    workers = [Deps.from_settings(settings) for _ in range(2)]
    backends = [AuraGraphBackend(deps) for deps in workers]  # built as the worker builds it
    try:
        async def provision(i: int) -> Any:
            backend = backends[i % 2]
            created = await backend.deps.store.create_project(
                name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES)
            await backend.create(created.project)
            project = await backend.deps.store.get_project(created.project.id)
            assert project is not None
            return await ActivityEnvironment().run(backend.wait_online, project)

        started = time.monotonic()
        results = await asyncio.gather(*(provision(i) for i in range(50)))
        took = time.monotonic() - started
    finally:
        for backend, deps in zip(backends, workers, strict=True):
            await backend.aclose()
            await deps.aclose()

    assert all(r["status"] == "running" for r in results), results[:2]
    assert len(emu.live_instances()) == 50
    rate = emu.rate()
    print(f"\nAura budget: {rate['requests']} requests in {took:.1f} s, at most {rate['max_in_window']} "
          f"in any {WINDOW:g} s (limit {LIMIT}); {rate['rate_limited']} refused")
    assert rate["rate_limited"] == 0
    assert rate["max_in_window"] <= LIMIT
    # The budget was the bottleneck, and nearly all of it was used: not a lucky slow run.
    assert rate["requests"] > 3 * LIMIT
    assert rate["max_in_window"] >= LIMIT * 0.75
