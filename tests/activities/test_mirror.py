"""The one step mechanism (activities.mirror) on its own, against the real mirror database."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deps import Deps
from activities.mirror import StepActivities, StepSkipped, step
from tenantflow import store as store_module
from tenantflow.catalog import PROJECT_STEP_NAMES, AttemptOutcome, RunKind, StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import DatabaseUnavailable, MirrorUnavailable, ServiceRejected
from tenantflow.store import Fence, Store
from tests.conftest import eventually


class Steps(StepActivities):
    outcome: Any = None

    @step(StepName.CREATE_TENANT_DATABASE)
    async def body(self, input: StepInput) -> StepResult:
        await self.sleep()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return StepResult(status="success", details={"database": "t_x"})

    async def sleep(self) -> None:
        import asyncio

        await asyncio.sleep(getattr(self, "delay", 0))


class FlakyStore(Store):
    """A mirror that is unreachable for its next ``outage`` writes, as during a database restart."""

    outage = 0

    async def attempt_finished(self, *args: Any, **kwargs: Any) -> None:
        if self.outage:
            self.outage -= 1
            raise MirrorUnavailable("the mirror database is unreachable (OperationalError)")
        await super().attempt_finished(*args, **kwargs)


STEP = StepName.CREATE_TENANT_DATABASE


async def new_project(deps: Deps, name: str) -> uuid.UUID:
    created = await deps.store.create_project(name=name, kind="project", steps=PROJECT_STEP_NAMES)
    return created.project.id


async def row(deps: Deps, pid: uuid.UUID) -> Any:
    return {s.step_name: s for s in await deps.store.get_steps(pid)}[STEP]


async def attempts(deps: Deps, pid: uuid.UUID) -> list[tuple[int, int, str | None]]:
    return [(a.generation, a.attempt, a.outcome) for a in await deps.store.get_attempts(pid)
            if a.step_name == STEP]


def env_with_attempt(
    attempt: int, *, heartbeat: timedelta | None = None, start_to_close: timedelta | None = None
) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt, heartbeat_timeout=heartbeat,
                                   start_to_close_timeout=start_to_close)
    return env


async def test_success_is_recorded_with_timing_and_its_result(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    result = await env_with_attempt(1).run(Steps(deps).body, StepInput(str(pid)))
    assert result.status == "success"
    r = await row(deps, pid)
    assert r.status == "success" and r.retry_count == 0 and r.attempt == 1
    assert r.started_at <= r.completed_at
    assert r.result == {"database": "t_x"}
    assert r.error_message is None and r.error_details is None  # a result is not an error
    assert await attempts(deps, pid) == [(0, 1, "success")]


async def test_a_retryable_failure_leaves_the_row_pending_with_that_attempts_error(
    deps: Deps, tenant_name: Any
) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.outcome = DatabaseUnavailable("connection refused")
    with pytest.raises(ApplicationError) as err:
        await env_with_attempt(1).run(steps.body, StepInput(str(pid)))
    assert not err.value.non_retryable
    r = await row(deps, pid)
    # Temporal backs off and tries again: the step is not 'failed', it waits for its next attempt.
    assert r.status == "pending" and r.attempt == 1
    assert r.error_message == "connection refused"
    assert r.error_details == {"type": "DatabaseUnavailable", "attempt": 1, "retryable": True}

    # The next attempt: running, the last error still shown; then success clears it.
    steps.outcome = None
    steps.delay = 0.3  # type: ignore[attr-defined]
    task = asyncio.create_task(env_with_attempt(2).run(steps.body, StepInput(str(pid))))
    await eventually(lambda: _status_is(deps, pid, "running"))
    running = await row(deps, pid)
    assert running.error_message == "connection refused" and running.retry_count == 1
    await task
    r = await row(deps, pid)
    assert r.status == "success" and r.retry_count == 1 and r.error_message is None
    assert await attempts(deps, pid) == [(0, 1, "failed"), (0, 2, "success")]


async def _status_is(deps: Deps, pid: uuid.UUID, status: str) -> bool:
    return (await row(deps, pid)).status == status


async def test_a_permanent_error_is_recorded_and_left_for_the_workflow_to_fail(
    deps: Deps, tenant_name: Any
) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.outcome = ServiceRejected("region not allowed", details={"status_code": 400})
    with pytest.raises(ApplicationError) as err:
        await env_with_attempt(3).run(steps.body, StepInput(str(pid)))
    assert err.value.non_retryable and err.value.type == "ServiceRejected"
    r = await row(deps, pid)
    # Not 'pending' (nothing will retry it) and not 'failed' yet: only the workflow writes that.
    assert r.status == "running" and r.retry_count == 2 and r.completed_at is not None
    assert r.error_message == "region not allowed"
    assert r.error_details == {"type": "ServiceRejected", "attempt": 3, "retryable": False,
                               "status_code": 400}
    await deps.store.step_failed(pid, STEP, generation=0, message="ignored: the attempt knows more",
                                 details={"retry_state": "NON_RETRYABLE_FAILURE"})
    r = await row(deps, pid)
    assert r.status == "failed" and r.error_message == "region not allowed"
    assert r.error_details["retry_state"] == "NON_RETRYABLE_FAILURE"
    assert r.error_details["status_code"] == 400


async def test_skipped_step_records_the_reason_as_its_result(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.outcome = StepSkipped("graph_backend is 'none'")
    result = await env_with_attempt(1).run(steps.body, StepInput(str(pid)))
    assert result.status == "skipped"
    r = await row(deps, pid)
    assert r.status == "skipped" and r.result == {"skip_reason": "graph_backend is 'none'"}
    assert r.error_details is None


async def test_retry_count_never_goes_down_across_operator_retries(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.outcome = ServiceRejected("quota exceeded")
    for attempt in (1, 2):
        with pytest.raises(ApplicationError):
            await env_with_attempt(attempt).run(steps.body, StepInput(str(pid)))
    await deps.store.step_failed(pid, STEP, generation=0, message="x", details={})
    await deps.store.step_reset(pid, STEP, generation=1)  # an operator pressed retry
    r = await row(deps, pid)
    assert r.status == "pending" and r.retry_count == 1
    assert r.error_message == "quota exceeded"  # the last error stays visible until success
    steps.outcome = None
    await env_with_attempt(1).run(steps.body, StepInput(str(pid), generation=1))
    r = await row(deps, pid)
    assert r.status == "success" and r.retry_count == 2 and r.error_message is None
    assert await attempts(deps, pid) == [(0, 1, "failed"), (0, 2, "failed"), (1, 1, "success")]


async def test_a_late_write_of_an_abandoned_attempt_is_ignored(deps: Deps, tenant_name: Any) -> None:
    """Attempt 1 is paused past its heartbeat timeout; Temporal runs attempt 2, which succeeds;
    then attempt 1 wakes up and reports a failure. The row must stay as attempt 2 left it."""
    store, pid = deps.store, await new_project(deps, tenant_name())
    await store.attempt_started(pid, STEP, Fence(0, 1))
    await store.attempt_started(pid, STEP, Fence(0, 2))
    await store.attempt_finished(pid, STEP, Fence(0, 2), outcome=AttemptOutcome.SUCCESS, result={"ok": 1})
    await store.attempt_finished(pid, STEP, Fence(0, 1), outcome=AttemptOutcome.FAILED,
                                 error_message="timed out", error_details={}, retryable=True)
    await store.attempt_started(pid, STEP, Fence(0, 1))  # a replayed start: also too old
    r = await row(deps, pid)
    assert (r.status, r.attempt, r.result, r.error_message) == ("success", 2, {"ok": 1}, None)
    # The history keeps attempt 1 as lost (closed when attempt 2 started), not rewritten later.
    assert await attempts(deps, pid) == [(0, 1, "lost"), (0, 2, "success")]
    # Nor does a late final-failure mark of an earlier generation undo an operator's retry.
    await store.step_reset(pid, STEP, generation=1)
    await store.step_failed(pid, STEP, generation=0, message="late", details={})
    assert (await row(deps, pid)).status == "pending"


async def test_racing_attempt_writes_leave_the_newest_attempts_story(deps: Deps, tenant_name: Any) -> None:
    """Eight attempts of one step write at once (each its start, then its end), as a worker that
    paused and Temporal's later attempts can. Each write is one statement whose first part locks
    the row: whatever the order, the row is what the last attempt wrote, and no attempt is left
    open (each finished, was closed as lost by a newer start, or recorded nothing)."""
    store = deps.store
    for _ in range(5):
        pid = await new_project(deps, tenant_name())

        async def attempt(n: int, pid: uuid.UUID = pid) -> None:
            await store.attempt_started(pid, STEP, Fence(0, n))
            if n < 8:
                await store.attempt_finished(pid, STEP, Fence(0, n), outcome=AttemptOutcome.FAILED,
                                             error_message=f"attempt {n}", error_details={}, retryable=True)
            else:
                await store.attempt_finished(pid, STEP, Fence(0, n), outcome=AttemptOutcome.SUCCESS,
                                             result={"attempt": n})

        await asyncio.gather(*(attempt(n) for n in range(1, 9)))
        r = await row(deps, pid)
        assert (r.status, r.attempt, r.phase, r.result) == ("success", 8, 2, {"attempt": 8})
        assert r.error_message is None and r.retry_count == 7
        history = await deps.store.get_attempts(pid)
        assert all(a.finished_at is not None for a in history)
        assert [(a.attempt, a.outcome) for a in history if a.attempt == 8] == [(8, "success")]


async def test_an_attempt_that_reports_after_its_generation_failed_changes_nothing(
    deps: Deps, tenant_name: Any
) -> None:
    """Temporal handed attempt 3 to a worker that paused before its first write; the step's time
    budget ran out and the workflow marked the generation failed. When that worker wakes up, its
    start and its end must not turn the failed row back into running or success: the run is
    waiting for a person, and the row says so until an operator's retry starts a new generation."""
    store, pid = deps.store, await new_project(deps, tenant_name())
    await store.attempt_started(pid, STEP, Fence(0, 1))
    await store.attempt_finished(pid, STEP, Fence(0, 1), outcome=AttemptOutcome.FAILED,
                                 error_message="boom", error_details={}, retryable=True)
    await store.attempt_started(pid, STEP, Fence(0, 2))  # never reports back
    await store.step_failed(pid, STEP, generation=0, message="timed out", details={"retry_state": "TIMEOUT"})
    await store.attempt_started(pid, STEP, Fence(0, 3))
    await store.attempt_finished(pid, STEP, Fence(0, 3), outcome=AttemptOutcome.SUCCESS, result={"late": 1})
    r = await row(deps, pid)
    assert (r.status, r.attempt, r.result, r.error_message) == ("failed", 2, None, "timed out")
    assert await attempts(deps, pid) == [(0, 1, "failed"), (0, 2, "lost")]
    # An operator's retry starts generation 1, whose attempts write as before.
    await store.step_reset(pid, STEP, generation=1)
    await store.attempt_started(pid, STEP, Fence(1, 1))
    assert (await row(deps, pid)).status == "running"


@contextlib.asynccontextmanager
async def _attempt_start_held(deps: Deps, pid: uuid.UUID, fence: Fence) -> AsyncIterator[None]:
    """Attempt ``fence``'s start (the store's own statement) run in a transaction left open for
    the block (the row locked, the attempt row written but not committed), committed at its end:
    an attempt start caught in the middle."""
    async with deps.engine.connect() as conn, conn.begin():
        await conn.execute(store_module._ATTEMPT_STARTED, store_module._attempt_params(pid, STEP, fence))
        yield


@pytest.mark.parametrize("workflow_write", ["step_failed", "cancel_open_steps"])
async def test_the_workflows_final_writes_wait_for_an_attempt_start_in_flight(
    deps: Deps, tenant_name: Any, workflow_write: str
) -> None:
    """The workflow's final mark (or a deprovisioning's cancel) lands while an attempt's start is
    still in its transaction. It must wait for the row and then see that attempt: no attempt may
    be left open for ever, and the row ends as the workflow wrote it."""
    store, pid = deps.store, await new_project(deps, tenant_name())
    await store.attempt_started(pid, STEP, Fence(0, 1))
    async with _attempt_start_held(deps, pid, Fence(0, 2)):
        if workflow_write == "step_failed":
            write = store.step_failed(pid, STEP, generation=0, message="timed out", details={})
        else:
            write = store.cancel_open_steps(pid, RunKind.PROVISION)
        task = asyncio.create_task(write)
        await asyncio.sleep(0.3)
        assert not task.done()  # it waits for the step row
    await task
    r = await row(deps, pid)
    assert r.status == ("failed" if workflow_write == "step_failed" else "pending")
    assert await attempts(deps, pid) == [(0, 1, "lost"), (0, 2, "lost")]


async def test_begin_run_makes_missing_rows_and_takes_the_runs_status(deps: Deps, tenant_name: Any) -> None:
    store = deps.store
    assert not await store.begin_run(uuid.uuid4(), PROJECT_STEP_NAMES, "provisioning", seq=1)
    pid = (await store.create_project(name=tenant_name(), kind="project", steps=[STEP])).project.id
    await store.attempt_started(pid, STEP, Fence(0, 1))
    assert await store.begin_run(pid, PROJECT_STEP_NAMES, "provisioning", seq=2)
    rows = {s.step_name: s for s in await store.get_steps(pid)}
    assert set(rows) == set(PROJECT_STEP_NAMES)
    assert rows[STEP].status == "running"  # a row that exists is left alone
    assert {s.status for n, s in rows.items() if n != STEP} == {"pending"}
    project = await store.get_project(pid)
    assert project is not None and (project.status, project.status_seq) == ("provisioning", 2)
    # A retried, late begin does not undo a later status write.
    await store.set_project_status(pid, "online", seq=3)
    assert await store.begin_run(pid, PROJECT_STEP_NAMES, "provisioning", seq=2)
    project = await store.get_project(pid)
    assert project is not None and (project.status, project.status_seq) == ("online", 3)


async def test_project_status_writes_are_fenced_by_their_sequence(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    await deps.store.set_project_status(pid, "failed", seq=3)
    await deps.store.set_project_status(pid, "provisioning", seq=4)
    await deps.store.set_project_status(pid, "failed", seq=3)  # a retried, late write
    project = await deps.store.get_project(pid)
    assert project is not None and project.status == "provisioning" and project.status_seq == 4


async def test_a_mirror_outage_is_ridden_out_without_failing_the_attempt(
    deps: Deps, tenant_name: Any
) -> None:
    pid = await new_project(deps, tenant_name())
    flaky = FlakyStore(deps.engine)
    flaky.outage = 2  # two writes fail (0.5 s + 1 s of backoff), the third gets through
    steps = Steps(dataclasses.replace(deps, store=flaky))
    env = env_with_attempt(1, heartbeat=timedelta(seconds=1), start_to_close=timedelta(minutes=1))
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    result = await env.run(steps.body, StepInput(str(pid)))
    assert result.status == "success"
    r = await row(deps, pid)
    assert r.status == "success" and r.retry_count == 0  # no attempt was spent on the outage
    # Meanwhile the heartbeat said why the step was waiting (the Temporal Web UI shows it).
    assert any(d and d[0].get("mirror") for d in beats)


async def test_a_mirror_outage_longer_than_the_attempt_fails_it_retryably(
    deps: Deps, tenant_name: Any
) -> None:
    pid = await new_project(deps, tenant_name())
    flaky = FlakyStore(deps.engine)
    flaky.outage = 100
    steps = Steps(dataclasses.replace(deps, store=flaky))
    # start-to-close 6 s: writes are retried until 5 s before it, so about 1 s here.
    with pytest.raises(MirrorUnavailable):
        await env_with_attempt(1, start_to_close=timedelta(seconds=6)).run(steps.body, StepInput(str(pid)))
    assert (await row(deps, pid)).status == "running"  # Temporal retries; the next attempt writes


async def test_steps_heartbeat_while_they_run(deps: Deps, tenant_name: Any) -> None:
    pid = await new_project(deps, tenant_name())
    steps = Steps(deps)
    steps.delay = 0.5  # type: ignore[attr-defined]
    env = env_with_attempt(1, heartbeat=timedelta(seconds=0.6))
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    await env.run(steps.body, StepInput(str(pid)))
    assert len(beats) >= 2
