"""The one mechanism every step activity goes through: status mirroring, timing, error capture,
retry counting, heartbeating and the translation of our errors into Temporal's.

A step body only does its own work::

    class TenantPostgresActivities(StepActivities):
        @step(StepName.CREATE_TENANT_DATABASE)
        async def create_tenant_database(self, input: StepInput) -> StepResult: ...

It raises ``StepSkipped`` when its backend is not configured, a ``PermanentError`` for business
failures (non-retryable) and a ``TransientError`` for outages (retried by Temporal).

The row follows the seed's state machine (``tenantflow.catalog.StepStatus``): an attempt moves it
to ``running``; success or skip end it with the step's output in ``result``; a failed attempt that
Temporal will retry leaves it ``pending`` with that attempt's error; only the workflow writes
``failed``. Each write carries the attempt's fence (``tenantflow.store.Fence``), so a late write of
an attempt Temporal gave up on is ignored, and each is retried by itself through a mirror outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import Deps
from tenantflow.catalog import AttemptOutcome, StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import MirrorUnavailable, NotReady, PermanentError, TenantflowError
from tenantflow.models import Project, StepStatus
from tenantflow.store import Fence, Store

log = logging.getLogger(__name__)

# Mirror writes during an outage of the mirror database: 0.5, 1, 2, 4, 5, 5, ... seconds apart,
# until MIRROR_RETRY_MARGIN before the attempt's start-to-close timeout.
MIRROR_RETRY_FIRST_DELAY = 0.5
MIRROR_RETRY_MAX_DELAY = 5.0
MIRROR_RETRY_MARGIN = 5.0
MIRROR_RETRY_DEFAULT_BUDGET = 60.0


class StepSkipped(Exception):  # noqa: N818 - a outcome, not an error
    """Raised by a step body whose backend is not configured."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepActivities:
    """Base of the activity classes: holds the worker's shared dependencies."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    async def load_project(self, input: StepInput) -> Project:
        """The step's tenant row; ``NotReady`` (non-retryable) if the mirror has no such project."""
        project = await self.deps.store.get_project(uuid.UUID(input.project_id))
        if project is None:
            raise NotReady(f"project {input.project_id} does not exist in the mirror")
        return project


Body = Callable[[Any, StepInput], Awaitable[StepResult | None]]
F = TypeVar("F", bound=Callable[..., Any])


def describe_error(exc: BaseException, *, attempt: int) -> tuple[str, dict[str, Any], bool]:
    """(message, error_details, retryable) for a step's exception. Never includes secrets:
    our errors carry curated details; foreign ones are reduced to their type and message."""
    if isinstance(exc, TenantflowError):
        retryable = not isinstance(exc, PermanentError)
        details = {"type": type(exc).__name__, "attempt": attempt, "retryable": retryable, **exc.details}
        return exc.message, details, retryable
    return (
        f"{type(exc).__name__}: {exc}",
        {"type": type(exc).__name__, "attempt": attempt, "retryable": True, "unexpected": True},
        True,
    )


# A running step heartbeats this many times per heartbeat timeout (the worker sends each one on:
# worker.build_worker), so one lost heartbeat does not time out a live step.
HEARTBEATS_PER_TIMEOUT = 3


class Heartbeat:
    """Heartbeats while a step runs, so a dead worker is noticed after the heartbeat timeout
    instead of the (much longer) start-to-close timeout. ``note`` goes into the heartbeat details
    (shown in the Temporal Web UI's pending activity), e.g. while the mirror is unreachable."""

    def __init__(self, timeout: timedelta | None) -> None:
        self.every = max(timeout.total_seconds() / HEARTBEATS_PER_TIMEOUT, 0.2) if timeout else None
        self.note: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Heartbeat:
        if self.every:
            self._task = asyncio.create_task(self._beat(self.every))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _beat(self, every: float) -> None:
        while True:
            if self.note:
                activity.heartbeat(self.note)
            else:
                activity.heartbeat()
            await asyncio.sleep(every)


class Mirror:
    """One attempt's writes to its step row, each retried by itself while the mirror database is
    unreachable: an outage of our own bookkeeping is not a failure of the step, so it does not
    spend the step's attempts. Gives up (``MirrorUnavailable``, retryable) shortly before the
    attempt's start-to-close timeout."""

    def __init__(self, store: Store, project_id: uuid.UUID, step: StepName, fence: Fence,
                 heartbeat: Heartbeat, *, budget: float) -> None:
        self.store, self.project_id, self.step, self.fence = store, project_id, step, fence
        self.heartbeat = heartbeat
        self.deadline = asyncio.get_running_loop().time() + budget

    async def started(self) -> None:
        await self._write(lambda: self.store.attempt_started(self.project_id, self.step, self.fence))

    async def finished(self, outcome: AttemptOutcome, **values: Any) -> None:
        await self._write(lambda: self.store.attempt_finished(
            self.project_id, self.step, self.fence, outcome=outcome, **values
        ))

    async def _write(self, write: Callable[[], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        delay, since = MIRROR_RETRY_FIRST_DELAY, loop.time()
        while True:
            try:
                await write()
                self.heartbeat.note = None
                return
            except MirrorUnavailable as exc:
                waited = loop.time() - since
                if loop.time() + delay > self.deadline:
                    raise
                self.heartbeat.note = {"mirror": "unavailable, retrying the status write",
                                       "waited_seconds": round(waited, 1)}
                log.warning("step %s of %s: mirror write failed (%s), retrying in %.1fs",
                            self.step, self.project_id, exc.message, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MIRROR_RETRY_MAX_DELAY)


def step(name: StepName) -> Callable[[Body], Callable[[Any, StepInput], Awaitable[StepResult]]]:
    """Make ``body`` the Temporal activity ``name`` with status mirroring around it."""

    def decorate(body: Body) -> Callable[[Any, StepInput], Awaitable[StepResult]]:
        @functools.wraps(body)
        async def run(self: StepActivities, input: StepInput) -> StepResult:
            info = activity.info()
            fence = Fence(input.generation, info.attempt)
            async with Heartbeat(info.heartbeat_timeout) as beat:
                mirror = Mirror(self.deps.store, uuid.UUID(input.project_id), name, fence, beat,
                                budget=_mirror_budget(info.start_to_close_timeout))
                await mirror.started()
                try:
                    result = await body(self, input) or StepResult(status=StepStatus.SUCCESS)
                except StepSkipped as skip:
                    details = {"skip_reason": skip.reason}
                    await mirror.finished(AttemptOutcome.SKIPPED, result=details)
                    return StepResult(status=StepStatus.SKIPPED, details=details)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    message, details, retryable = describe_error(exc, attempt=info.attempt)
                    log.warning("step %s of %s failed (attempt %d): %s", name, input.project_id,
                                info.attempt, message)
                    failure = ApplicationError(
                        message, details, type=details["type"], non_retryable=not retryable
                    )
                    # If even this write cannot get through, the attempt still fails with its own
                    # error: the next attempt or the workflow's final mark fixes the row.
                    with contextlib.suppress(MirrorUnavailable):
                        await mirror.finished(AttemptOutcome.FAILED, error_message=message,
                                              error_details=details, retryable=retryable)
                    raise failure from exc
                result.status = StepStatus.SUCCESS
                await mirror.finished(AttemptOutcome.SUCCESS, result=_result_of(result))
                return result

        return activity.defn(name=name)(run)

    return decorate


def _result_of(result: StepResult) -> dict[str, Any] | None:
    """What the row's ``result`` shows: the step's details and the names of the secrets it stored."""
    shown = dict(result.details)
    if result.credential_refs:
        shown["credentials_stored"] = list(result.credential_refs)
    return shown or None


def _mirror_budget(start_to_close: timedelta | None) -> float:
    """How long one attempt may keep retrying its mirror writes: most of its start-to-close."""
    if not start_to_close:
        return MIRROR_RETRY_DEFAULT_BUDGET
    return max(start_to_close.total_seconds() - MIRROR_RETRY_MARGIN, 1.0)
