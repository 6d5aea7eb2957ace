"""The one step mechanism (activities.mirror) on its own, against the real mirror database."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deps import Deps
from activities.mirror import StepActivities, StepSkipped, step
from tenantflow.catalog import PROJECT_STEP_NAMES
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import DatabaseUnavailable, ServiceRejected
from tenantflow.store import Store


class Steps(StepActivities):
    outcome: Any = None

    @step("create_tenant_database")
    async def body(self, input: StepInput) -> StepResult:
        await self.sleep()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return StepResult(status="success", details={"database": "t_x"})

    async def sleep(self) -> None:
        import asyncio

        await asyncio.sleep(getattr(self, "delay", 0))


class FlakyStore(Store):
    """A mirror whose next ``step_finished`` write fails, as during a database outage."""

    fail_next = False

    async def step_finished(self, *args: Any, **kwargs: Any) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("mirror database went away")
        await super().step_finished(*args, **kwargs)


async def new_project(deps: Deps, name: str) -> uuid.UUID:
    created = await deps.store.create_project(name=name, kind="project", steps=PROJECT_STEP_NAMES)
    return created.project.id


async def row(deps: Deps, pid: uuid.UUID) -> Any:
    return {s.step_name: s for s in await deps.store.get_steps(pid)}["create_tenant_database"]


def env_with_attempt(attempt: int, *, heartbeat: timedelta | None = None) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt, heartbeat_timeout=heartbeat)
    return env


async def test_success_is_recorded_with_timing_and_details(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    result = await env_with_attempt(1).run(Steps(deps).body, StepInput(str(pid)))
    assert result.status == "success"
    r = await row(deps, pid)
    assert r.status == "success" and r.retry_count == 0
    assert r.started_at <= r.completed_at
    assert r.error_details == {"result": {"database": "t_x"}}


async def test_permanent_error_is_non_retryable_and_recorded(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.outcome = ServiceRejected("region not allowed", details={"status_code": 400})
    with pytest.raises(ApplicationError) as err:
        await env_with_attempt(3).run(steps.body, StepInput(str(pid)))
    assert err.value.non_retryable and err.value.type == "ServiceRejected"
    r = await row(deps, pid)
    assert r.status == "failed" and r.retry_count == 2
    assert r.error_message == "region not allowed"
    assert r.error_details == {"type": "ServiceRejected", "attempt": 3, "retryable": False,
                               "status_code": 400}


async def test_transient_error_is_retryable(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.outcome = DatabaseUnavailable("connection refused")
    with pytest.raises(ApplicationError) as err:
        await env_with_attempt(1).run(steps.body, StepInput(str(pid)))
    assert not err.value.non_retryable
    assert (await row(deps, pid)).error_details["type"] == "DatabaseUnavailable"


async def test_skipped_step_records_the_reason(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.outcome = StepSkipped("graph_backend is 'none'")
    result = await env_with_attempt(1).run(steps.body, StepInput(str(pid)))
    assert result.status == "skipped"
    r = await row(deps, pid)
    assert r.status == "skipped" and r.error_details == {"skipped": "graph_backend is 'none'"}


async def test_a_failed_mirror_write_fails_the_attempt_so_the_outcome_is_not_lost(
    deps: Deps, tenant_name: Any
) -> None:
    pid = await new_project(deps, tenant_name())
    flaky = FlakyStore(deps.engine)
    flaky.fail_next = True
    steps = Steps(dataclasses.replace(deps, store=flaky))
    with pytest.raises(ConnectionError):
        await env_with_attempt(1).run(steps.body, StepInput(str(pid)))
    assert (await row(deps, pid)).status == "running"  # Temporal retries this attempt...
    await env_with_attempt(2).run(steps.body, StepInput(str(pid)))
    r = await row(deps, pid)  # ...and the retry records the outcome
    assert r.status == "success" and r.retry_count == 1


async def test_steps_heartbeat_while_they_run(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.delay = 0.5  # type: ignore[attr-defined]
    env = env_with_attempt(1, heartbeat=timedelta(seconds=0.6))
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    await env.run(steps.body, StepInput(str(pid)))
    assert len(beats) >= 2
