"""The reads the console's list is built on, on rows written through the Store: tenants newest
first, tenants per status, and per tenant the step that is under way or waiting (and when
provisioning was done)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from activities.deps import Deps
from tenantflow.catalog import (
    PROJECT_STEP_NAMES,
    PROJECT_TEARDOWN_STEP_NAMES,
    AttemptOutcome,
    ProjectKind,
    ProjectStatus,
    StepName,
)
from tenantflow.models import Project
from tenantflow.store import Fence, ProjectQuery, Store, newest_first_statement


async def make(store: Store, name: str) -> Project:
    return (await store.create_project(name=name, kind=ProjectKind.PROJECT, steps=PROJECT_STEP_NAMES)).project


async def succeed(store: Store, project: Project, steps: tuple[StepName, ...]) -> None:
    for step in steps:
        await store.attempt_started(project.id, step, Fence(0, 1))
        await store.attempt_finished(project.id, step, Fence(0, 1), outcome=AttemptOutcome.SUCCESS, result={})


async def test_newest_first_pages_walk_every_match_backwards_through_an_index(
    deps: Deps, tenant_name: Callable[[], str]
) -> None:
    store = deps.store
    p = tenant_name()
    made = [await make(store, f"{p}-{i}") for i in range(7)]
    for project in made[::2]:
        await store.set_project_status(project.id, ProjectStatus.ONLINE)

    async def walk(**filters: Any) -> list[list[str]]:
        pages, after = [], None
        while True:
            page = await store.list_projects_newest_first(ProjectQuery(limit=3, after=after, name_prefix=p,
                                                                       **filters))
            pages.append([project.name for project in page.projects])
            if page.next_after is None:
                return pages
            after = page.next_after

    names = [project.name for project in made]
    assert await walk() == [names[6:3:-1], names[3:0:-1], names[0:1]]
    assert await walk(status=ProjectStatus.ONLINE) == [[names[6], names[4], names[2]], [names[0]]]
    # The order can be served by an index scanned backwards, not by sorting the table (with sorts
    # and sequential scans priced out, a plan without Sort proves such an index path exists,
    # however few rows the table has now).
    async with store.engine.connect() as conn:
        await conn.execute(text("SET enable_sort = off"))
        await conn.execute(text("SET enable_seqscan = off"))
        for query in (ProjectQuery(limit=3), ProjectQuery(limit=3, status=ProjectStatus.ONLINE)):
            statement = newest_first_statement(query)
            compiled = statement.compile(conn.engine, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in await conn.execute(text(f"EXPLAIN {compiled}")))
            assert "Index Scan Backward" in plan and "Sort" not in plan, plan


async def test_counts_per_status_follow_status_changes(deps: Deps, tenant_name: Callable[[], str]) -> None:
    store = deps.store
    before = await store.count_by_status()
    made = [await make(store, tenant_name()) for _ in range(4)]
    await store.set_project_status(made[0].id, ProjectStatus.ONLINE)
    await store.set_project_status(made[1].id, ProjectStatus.FAILED)
    await store.set_project_status(made[2].id, ProjectStatus.FAILED)
    after = await store.count_by_status()
    delta = {s: after.get(s, 0) - before.get(s, 0) for s in ProjectStatus}
    assert delta == {**dict.fromkeys(ProjectStatus, 0), "pending": 1, "online": 1, "failed": 2}


async def test_the_summary_names_the_failed_else_running_else_retrying_step(
    deps: Deps, tenant_name: Callable[[], str]
) -> None:
    store = deps.store
    failed, running, retrying, fresh = [await make(store, tenant_name()) for _ in range(4)]
    await succeed(store, failed, PROJECT_STEP_NAMES[:2])
    await store.step_failed(failed.id, StepName.CREATE_GRAPH_DATABASE, generation=0,
                            message="graph refused", details={})
    await store.attempt_started(running.id, StepName.CREATE_TENANT_DATABASE, Fence(0, 1))
    await store.attempt_started(retrying.id, StepName.CREATE_TENANT_DATABASE, Fence(0, 1))
    await store.attempt_finished(retrying.id, StepName.CREATE_TENANT_DATABASE, Fence(0, 1),
                                 outcome=AttemptOutcome.FAILED, error_message="cluster down", retryable=True)

    summaries = await store.step_summaries([failed.id, running.id, retrying.id, fresh.id])
    assert (summaries[failed.id].current_step, summaries[failed.id].current_status,
            summaries[failed.id].current_error) == ("create_graph_database", "failed", "graph refused")
    assert (summaries[running.id].current_step, summaries[running.id].current_status) == (
        "create_tenant_database", "running")
    assert (summaries[retrying.id].current_step, summaries[retrying.id].current_status,
            summaries[retrying.id].current_error) == ("create_tenant_database", "pending", "cluster down")
    assert summaries[fresh.id].current_step is None
    assert all(s.online_at is None for s in summaries.values())  # none has finished provisioning
    assert await store.step_summaries([]) == {}


async def test_online_at_is_when_the_last_provisioning_step_finished_and_the_teardown_comes_first(
    deps: Deps, tenant_name: Callable[[], str]
) -> None:
    store = deps.store
    project = await make(store, tenant_name())
    await succeed(store, project, PROJECT_STEP_NAMES)
    rows = await store.get_steps(project.id)
    summary = (await store.step_summaries([project.id]))[project.id]
    assert summary.online_at == max(r.completed_at for r in rows if r.completed_at)
    assert summary.current_step is None

    # A deletion starts: its running step is the story, the provisioning stays done.
    await store.ensure_steps(project.id, PROJECT_TEARDOWN_STEP_NAMES)
    await store.attempt_started(project.id, StepName.STOP_PROVISIONING, Fence(0, 1))
    summary = (await store.step_summaries([project.id]))[project.id]
    assert (summary.current_step, summary.current_status) == ("stop_provisioning", "running")
    assert summary.online_at is not None


async def test_a_failed_provisioning_step_gives_way_to_the_teardowns_steps(
    deps: Deps, tenant_name: Callable[[], str]
) -> None:
    store = deps.store
    project = await make(store, tenant_name())
    await store.step_failed(project.id, StepName.CREATE_TENANT_DATABASE, generation=0, message="x",
                            details={})
    await store.ensure_steps(project.id, PROJECT_TEARDOWN_STEP_NAMES)
    await store.attempt_started(project.id, StepName.DROP_TENANT_DATABASE, Fence(0, 1))
    summary = (await store.step_summaries([project.id]))[project.id]
    assert (summary.current_step, summary.current_status) == ("drop_tenant_database", "running")
