"""Admission (``tenantflow.admission``): a cap on provisioning runs in flight, a burst let in
oldest first as runs end, on a mirror of its own (the cap counts every tenant in the mirror)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client

from activities.deps import Deps
from tenantflow.catalog import PROJECT_STEP_NAMES, STATUS_SEQ_BASE, ProjectKind, ProjectStatus, RunKind
from tenantflow.models import Project
from tenantflow.settings import Settings
from tenantflow.store import Store
from tests.api.conftest import AUTH, open_api
from tests.conftest import eventually
from tests.e2e.test_project_provisioning import wait_status

CAP = 2


@pytest.fixture
def capped(make_settings: Callable[..., Settings], own_mirror: str) -> Settings:
    return make_settings(database_url=own_mirror, max_runs_in_flight=CAP, admission_interval_seconds=0.1)


@pytest_asyncio.fixture(loop_scope="session")
async def store(capped: Settings) -> AsyncIterator[Store]:
    deps = Deps.from_settings(capped)
    yield deps.store
    await deps.aclose()


async def new_tenant(store: Store) -> Project:
    created = await store.create_project(
        name=f"t{uuid.uuid4().hex[:10]}", kind=ProjectKind.PROJECT, steps=PROJECT_STEP_NAMES
    )
    return created.project


async def admitted(store: Store, *projects: Project) -> list[bool]:
    return [(await store.get_project(p.id)).admitted_at is not None for p in projects]  # type: ignore[union-attr]


async def test_the_cap_lets_in_that_many_and_the_rest_oldest_first_as_runs_end(store: Store) -> None:
    tenants = [await new_tenant(store) for _ in range(5)]
    assert [await store.admit(t.id, cap=CAP) for t in tenants] == [True, True, False, False, False]
    # Nothing has ended: no room.
    assert await store.admit_waiting(cap=CAP) == []
    # A run ending (online, or failed and waiting for a person) frees its slot, for the oldest.
    await store.set_project_status(tenants[0].id, ProjectStatus.ONLINE, seq=10)
    await store.set_project_status(tenants[1].id, ProjectStatus.FAILED, seq=10)
    assert [p.id for p in await store.admit_waiting(cap=CAP)] == [tenants[2].id, tenants[3].id]
    assert await admitted(store, *tenants) == [True, True, True, True, False]
    # A newcomer queues behind the one still waiting, even when a slot is free.
    await store.set_project_status(tenants[2].id, ProjectStatus.ONLINE, seq=10)
    late = await new_tenant(store)
    assert await store.admit(late.id, cap=CAP) is False
    assert [p.id for p in await store.admit_waiting(cap=CAP)] == [tenants[4].id]
    # Being let in is for good: asking again (a repeated POST) says so.
    assert await store.admit(tenants[0].id, cap=CAP) is True


async def test_a_tenant_deleted_while_it_waits_is_never_let_in(store: Store) -> None:
    first, second, waiting = [await new_tenant(store) for _ in range(3)]
    for tenant in (first, second, waiting):
        await store.admit(tenant.id, cap=CAP)
    await store.set_project_status(
        waiting.id, ProjectStatus.DEPROVISIONING, seq=STATUS_SEQ_BASE[RunKind.DEPROVISION]
    )
    await store.set_project_status(first.id, ProjectStatus.ONLINE, seq=10)
    assert await store.admit_waiting(cap=CAP) == []
    assert await store.admit(waiting.id, cap=CAP) is False


async def test_concurrent_admissions_never_exceed_the_cap(store: Store) -> None:
    tenants = [await new_tenant(store) for _ in range(12)]
    results = await asyncio.gather(*(store.admit(t.id, cap=CAP) for t in tenants),
                                   store.admit_waiting(cap=CAP), store.admit_waiting(cap=CAP))
    # A tenant the loop let in answers True to its own admit() too: count tenants, not answers.
    let_in = {t.id for t, ok in zip(tenants, results[:12], strict=True) if ok}
    let_in |= {p.id for batch in results[12:] for p in batch}  # type: ignore[union-attr]
    assert len(let_in) == CAP
    assert sum(await admitted(store, *tenants)) == CAP


async def test_no_cap_lets_everyone_in(store: Store) -> None:
    tenants = [await new_tenant(store) for _ in range(3)]
    assert [await store.admit(t.id, cap=0) for t in tenants] == [True, True, True]


async def test_a_burst_over_the_cap_all_goes_online_let_in_in_the_order_it_came(
    capped: Settings, run_worker: Any, store: Store, temporal_client: Client,
) -> None:
    names = [f"t{uuid.uuid4().hex[:8]}-{i}" for i in range(6)]
    in_flight: list[int] = []
    async with run_worker(capped), open_api(capped, headers=AUTH) as api:
        posted = [(await api.post("/v1/projects", json={"name": n})).json() for n in names]
        assert [p["status"] for p in posted] == ["pending"] * 6  # answered at once, all of them

        async def count_in_flight() -> bool:
            rows = [await store.get_project(uuid.UUID(p["id"])) for p in posted]
            running = ("pending", "provisioning")
            in_flight.append(sum(1 for r in rows if r and r.admitted_at and r.status in running))
            return all(r and r.status == ProjectStatus.ONLINE for r in rows)

        await eventually(count_in_flight, timeout=120, interval=0.05)
        bodies = [await wait_status(api, p["id"], "online") for p in posted]
    assert max(in_flight) <= CAP
    projects = [await store.get_project(uuid.UUID(b["id"])) for b in bodies]
    let_in = [p.admitted_at for p in projects if p]
    assert let_in == sorted(let_in)  # oldest first
    # The waiting ones were started by the admission loop: each has its one run, and it completed.
    for body in bodies:
        description = await temporal_client.get_workflow_handle(body["workflow_id"]).describe()
        assert description.status is not None and description.status.name == "COMPLETED"
