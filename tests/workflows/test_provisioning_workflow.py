"""The shared step machinery, with the step activities replaced by scripted ones registered under
the same names (the mirror activities and the mirror database are real)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Worker

from activities.deps import Deps
from activities.project import ProjectActivities
from tenantflow.catalog import PROJECT_STEP_NAMES, USER_STEP_NAMES
from tenantflow.contracts import ProvisionInput, RetryRequest
from tenantflow.errors import DatabaseUnavailable, ServiceRejected, VerificationFailed
from tenantflow.models import ProjectKind
from tenantflow.settings import Settings
from tenantflow.store import Store
from tests.conftest import eventually
from tests.scripted import ScriptedSteps
from workflows.project import ProvisionProjectWorkflow
from workflows.user import ProvisionUserWorkflow


@pytest.fixture
async def harness(settings: Settings, deps: Deps, temporal_client: Client):  # type: ignore[no-untyped-def]
    script = ScriptedSteps(deps)
    project = ProjectActivities(deps)
    worker = Worker(
        temporal_client,
        task_queue=settings.task_queue,
        workflows=[ProvisionProjectWorkflow, ProvisionUserWorkflow],
        activities=[project.begin_provisioning, project.set_project_status, project.mark_step,
                    *script.activities()],
    )
    async with worker:
        yield script


async def start(client: Client, settings: Settings, store: Store, name: str,
                *, kind: str = ProjectKind.PROJECT, outage_budget_seconds: float | None = None,
                ) -> tuple[uuid.UUID, WorkflowHandle]:
    steps = PROJECT_STEP_NAMES if kind == ProjectKind.PROJECT else USER_STEP_NAMES
    created = await store.create_project(name=name, kind=kind, steps=steps)
    wf = ProvisionProjectWorkflow.run if kind == ProjectKind.PROJECT else ProvisionUserWorkflow.run
    handle = await client.start_workflow(
        wf,
        ProvisionInput(str(created.project.id), name, retry_initial_interval_seconds=0.05,
                       outage_budget_seconds=outage_budget_seconds),
        id=created.project.workflow_id,
        task_queue=settings.task_queue,
    )
    return created.project.id, handle


async def step_rows(store: Store, pid: uuid.UUID) -> dict[str, Any]:
    return {s.step_name: s for s in await store.get_steps(pid)}


async def test_happy_path_marks_every_step_and_the_project(
    harness: ScriptedSteps, settings: Settings, deps: Deps, temporal_client: Client, tenant_name: Any
) -> None:
    harness.skip.add("register_auth_service")
    pid, handle = await start(temporal_client, settings, deps.store, tenant_name())
    result = await handle.result()
    assert result.status == "online"
    rows = await step_rows(deps.store, pid)
    assert set(rows) == set(PROJECT_STEP_NAMES)
    assert rows["register_auth_service"].status == "skipped"
    assert all(r.status == "success" for n, r in rows.items() if n != "register_auth_service")
    project = await deps.store.get_project(pid)
    assert project is not None and project.status == "online"
    assert all(harness.calls[n] == 1 for n in PROJECT_STEP_NAMES)


async def test_failed_step_waits_and_retry_signal_resumes_from_it(
    harness: ScriptedSteps, settings: Settings, deps: Deps, temporal_client: Client, tenant_name: Any
) -> None:
    harness.fail["generate_api_keys"] = ServiceRejected("boom")
    pid, handle = await start(temporal_client, settings, deps.store, tenant_name())

    async def failed() -> bool:
        p = await deps.store.get_project(pid)
        return p is not None and p.status == "failed"

    await eventually(failed)
    state = await handle.query(ProvisionProjectWorkflow.state)
    assert state.failed_step == "generate_api_keys" and state.last_error == "boom"
    rows = await step_rows(deps.store, pid)
    assert rows["generate_api_keys"].status == "failed"
    assert rows["generate_api_keys"].error_message == "boom"
    assert rows["register_auth_service"].status == "pending"
    # The run waits: it has not completed.
    assert (await handle.describe()).status.name == "RUNNING"  # type: ignore[union-attr]

    del harness.fail["generate_api_keys"]
    await handle.signal(ProvisionProjectWorkflow.retry, RetryRequest(reason="fixed"))
    assert (await handle.result()).status == "online"
    assert harness.calls["create_tenant_database"] == 1  # earlier steps did not run again
    assert harness.calls["generate_api_keys"] == 2
    rows = await step_rows(deps.store, pid)
    assert all(r.status == "success" for r in rows.values())


async def test_retry_update_is_rejected_while_nothing_failed(
    harness: ScriptedSteps, settings: Settings, deps: Deps, temporal_client: Client, tenant_name: Any
) -> None:
    harness.fail["verify_services"] = VerificationFailed("mismatch")
    pid, handle = await start(temporal_client, settings, deps.store, tenant_name())
    await eventually(lambda: harness.calls["verify_services"] >= 1)

    async def state_failed() -> bool:
        return (await handle.query(ProvisionProjectWorkflow.state)).failed_step == "verify_services"

    await eventually(state_failed)
    harness.fail.clear()
    accepted = await handle.execute_update(ProvisionProjectWorkflow.retry_failed_step, RetryRequest())
    assert accepted.step_name == "verify_services"
    await handle.result()
    # A run that is still going has nothing to retry: the validator rejects the update.
    harness.fail["create_tenant_database"] = DatabaseUnavailable("slow")
    _, other = await start(temporal_client, settings, deps.store, tenant_name())
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await other.execute_update(ProvisionProjectWorkflow.retry_failed_step, RetryRequest())
    await other.terminate("test over")
    assert "nothing to retry" in str(err.value.cause)


async def test_an_outage_is_ridden_out_for_the_budget_then_waits_for_a_person(
    harness: ScriptedSteps, settings: Settings, deps: Deps, temporal_client: Client, tenant_name: Any
) -> None:
    harness.fail["create_tenant_schema"] = DatabaseUnavailable("db down")
    pid, handle = await start(temporal_client, settings, deps.store, tenant_name(), outage_budget_seconds=3)

    async def failed() -> bool:
        p = await deps.store.get_project(pid)
        return p is not None and p.status == "failed"

    await eventually(failed, timeout=60)
    rows = await step_rows(deps.store, pid)
    # Retried with backoff (0.1, 0.2, 0.4, ... s) until the 3 s budget ran out, not 5 times at once.
    calls = harness.calls["create_tenant_schema"]
    assert 3 <= calls <= 8, calls
    # The attempt running when the budget ran out may have been cancelled before its body ran.
    assert rows["create_tenant_schema"].retry_count in (calls - 1, calls)
    assert rows["create_tenant_schema"].status == "failed"
    assert "db down" in rows["create_tenant_schema"].error_message
    assert rows["create_tenant_schema"].error_details["retry_state"] == "TIMEOUT"
    await handle.terminate("test over")


async def test_user_workflow_runs_only_the_graph_steps(
    harness: ScriptedSteps, settings: Settings, deps: Deps, temporal_client: Client, tenant_name: Any
) -> None:
    pid, handle = await start(temporal_client, settings, deps.store, tenant_name(), kind=ProjectKind.USER)
    result = await handle.result()
    assert result.steps == {n: "success" for n in USER_STEP_NAMES}
    assert set(harness.calls) == set(USER_STEP_NAMES)
