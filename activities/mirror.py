"""The one mechanism every step activity goes through: status mirroring, timing, error capture,
retry counting, heartbeating and the translation of our errors into Temporal's.

A step body only does its own work::

    class TenantPostgresActivities(StepActivities):
        @step(StepName.CREATE_TENANT_DATABASE)
        async def create_tenant_database(self, input: StepInput) -> StepResult: ...

It raises ``StepSkipped`` when its backend is not configured, a ``PermanentError`` for business
failures (non-retryable) and a ``TransientError`` for outages (retried by Temporal).
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
from tenantflow.catalog import StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import NotReady, PermanentError, TenantflowError
from tenantflow.models import Project, StepStatus

log = logging.getLogger(__name__)


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


async def _heartbeat_until_cancelled(every: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(every)


def step(name: StepName) -> Callable[[Body], Callable[[Any, StepInput], Awaitable[StepResult]]]:
    """Make ``body`` the Temporal activity ``name`` with status mirroring around it."""

    def decorate(body: Body) -> Callable[[Any, StepInput], Awaitable[StepResult]]:
        @functools.wraps(body)
        async def run(self: StepActivities, input: StepInput) -> StepResult:
            info = activity.info()
            store = self.deps.store
            project_id = uuid.UUID(input.project_id)
            await store.step_started(project_id, name, attempt=info.attempt)
            # Heartbeat while the body runs, so a dead worker is noticed after the heartbeat
            # timeout instead of the (much longer) start-to-close timeout.
            beat_every = _beat_interval(info.heartbeat_timeout)
            beats = asyncio.create_task(_heartbeat_until_cancelled(beat_every)) if beat_every else None
            try:
                result = await body(self, input) or StepResult(status=StepStatus.SUCCESS)
            except StepSkipped as skip:
                await store.step_finished(
                    project_id, name, status=StepStatus.SKIPPED,
                    error_message=None, error_details={"skipped": skip.reason},
                )
                return StepResult(status=StepStatus.SKIPPED, details={"skip_reason": skip.reason})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                message, details, retryable = describe_error(exc, attempt=info.attempt)
                log.warning("step %s of %s failed (attempt %d): %s", name, project_id,
                            info.attempt, message)
                # If this write fails, its own error propagates: the attempt still fails and
                # the workflow records the final outcome — the row never stays 'running'.
                await store.step_finished(
                    project_id, name, status=StepStatus.FAILED,
                    error_message=message, error_details=details,
                )
                raise ApplicationError(
                    message, details, type=details["type"], non_retryable=not retryable
                ) from exc
            finally:
                if beats is not None:
                    beats.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await beats
            result.status = StepStatus.SUCCESS if result.status != StepStatus.SKIPPED else result.status
            await store.step_finished(
                project_id, name, status=StepStatus(result.status), error_message=None,
                error_details={"result": result.details} if result.details else None,
            )
            return result

        return activity.defn(name=name)(run)

    return decorate


def _beat_interval(timeout: timedelta | None) -> float | None:
    if not timeout:
        return None
    return max(timeout.total_seconds() / 3, 0.2)
