"""The machinery both provisioning workflows share: run steps in order, mirror the run's
status, stop at a failed step and wait for an operator's retry, answer the ``state`` query.

Subclasses only say which steps they run (``STEPS``) and define ``@workflow.run``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from tenantflow.contracts import (
        BeginInput,
        MarkStepInput,
        ProjectStatusInput,
        ProvisionInput,
        ProvisionResult,
        ProvisionState,
        RetryRequest,
        RetryResult,
        StepInput,
    )
    from workflows.steps import (
        BEGIN_PROVISIONING,
        MARK_STEP,
        MIRROR_RETRY,
        MIRROR_TIMEOUT,
        SET_PROJECT_STATUS,
        StepSpec,
    )

PENDING, RUNNING, SUCCESS, FAILED, SKIPPED = "pending", "running", "success", "failed", "skipped"


def describe_activity_error(err: ActivityError) -> tuple[str, dict[str, Any]]:
    """Message and JSON details of a step's final failure, as the workflow saw it."""
    cause = err.cause
    details: dict[str, Any] = {"retry_state": err.retry_state.name if err.retry_state else None}
    if isinstance(cause, ApplicationError):
        details["type"] = cause.type
        return cause.message, details
    if isinstance(cause, TimeoutError):
        kind = cause.type.name if cause.type else "UNKNOWN"
        details["type"] = f"Timeout.{kind}"
        return f"activity timed out ({kind}); the worker may have died", details
    details["type"] = type(cause).__name__ if cause else "ActivityError"
    return str(cause or err), details


class ProvisioningWorkflow:
    """Not a workflow by itself: the shared body of ``ProvisionProjectWorkflow`` and
    ``ProvisionUserWorkflow`` (handlers defined here are inherited by both)."""

    STEPS: ClassVar[tuple[StepSpec, ...]] = ()

    def __init__(self) -> None:
        self._input: ProvisionInput | None = None
        self._status = "pending"
        self._steps: dict[str, str] = {s.name: PENDING for s in self.STEPS}
        self._failed_step: str | None = None
        self._last_error: str | None = None
        self._retry_pending = False
        self._retries_requested = 0

    # ------------------------------------------------------------------ handlers
    @workflow.query
    def state(self) -> ProvisionState:
        inp = self._input
        return ProvisionState(
            project_id=inp.project_id if inp else "",
            tenant_id=inp.tenant_id if inp else "",
            status=self._status,
            steps=dict(self._steps),
            failed_step=self._failed_step,
            last_error=self._last_error,
            retries_requested=self._retries_requested,
        )

    @workflow.signal
    def retry(self, request: RetryRequest) -> None:
        """Resume from the failed step. Ignored (and logged) while nothing has failed."""
        if self._failed_step is None or self._retry_pending:
            workflow.logger.info("retry signal ignored: no failed step is waiting")
            return
        self._request_retry(request)

    @workflow.update
    async def retry_failed_step(self, request: RetryRequest) -> RetryResult:
        """Like the ``retry`` signal, but the caller learns which step resumes (or why not)."""
        assert self._failed_step is not None
        step = self._failed_step
        self._request_retry(request)
        # Answer once the step is pending again (mirror written), not merely requested.
        await workflow.wait_condition(lambda: self._steps.get(step) != FAILED)
        return RetryResult(step_name=step)

    @retry_failed_step.validator
    def _validate_retry(self, request: RetryRequest) -> None:
        if self._failed_step is None:
            raise ValueError(f"nothing to retry: the run is {self._status} and no step has failed")
        if self._retry_pending:
            raise ValueError(f"a retry of {self._failed_step} is already under way")

    def _request_retry(self, request: RetryRequest) -> None:
        workflow.logger.info(
            "retry of %s requested by %s: %s",
            self._failed_step, request.requested_by or "?", request.reason or "-",
        )
        self._retry_pending = True
        self._retries_requested += 1

    # --------------------------------------------------------------------- body
    async def _provision(self, input: ProvisionInput) -> ProvisionResult:
        self._input = input
        await self._mirror(BEGIN_PROVISIONING, BeginInput(input.project_id, list(self._steps)))
        self._status = "provisioning"
        for spec in self.STEPS:
            await self._run_until_done(spec, input)
        await self._mirror(SET_PROJECT_STATUS, ProjectStatusInput(input.project_id, "online"))
        self._status = "online"
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ProvisionResult(input.project_id, self._status, dict(self._steps))

    async def _run_until_done(self, spec: StepSpec, input: ProvisionInput) -> None:
        """Run one step; on final failure mark it failed and wait for a retry, then run again."""
        while True:
            self._steps[spec.name] = RUNNING
            try:
                result = await workflow.execute_activity(
                    spec.activity,
                    StepInput(input.project_id),
                    **spec.activity_options(input),
                )
                self._steps[spec.name] = result.status
                return
            except ActivityError as err:
                message, details = describe_activity_error(err)
                await self._fail_and_wait(spec.name, message, details)

    async def _fail_and_wait(self, step: str, message: str, details: dict[str, Any]) -> None:
        assert self._input is not None
        pid = self._input.project_id
        self._steps[step] = FAILED
        self._failed_step, self._last_error = step, message
        await self._mirror(MARK_STEP, MarkStepInput(pid, step, FAILED, message, details))
        await self._mirror(SET_PROJECT_STATUS, ProjectStatusInput(pid, "failed"))
        self._status = "failed"
        workflow.logger.warning("step %s failed, waiting for a retry: %s", step, message)
        await workflow.wait_condition(lambda: self._retry_pending)
        await self._mirror(MARK_STEP, MarkStepInput(pid, step, PENDING))
        await self._mirror(SET_PROJECT_STATUS, ProjectStatusInput(pid, "provisioning"))
        self._status = "provisioning"
        self._steps[step] = PENDING
        self._failed_step = None
        self._retry_pending = False

    async def _mirror(self, activity: Any, arg: Any) -> None:
        await workflow.execute_activity(
            activity, arg, start_to_close_timeout=MIRROR_TIMEOUT, retry_policy=MIRROR_RETRY
        )
