"""The machinery both provisioning workflows share: run steps in order, mirror the run's
status, stop at a failed step and wait for an operator's retry, answer the ``state`` query.

Subclasses only say which steps they run (``STEPS``) and define ``@workflow.run``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from tenantflow.catalog import RETRY_SIGNAL, RETRY_UPDATE, STATE_QUERY, ProjectStatus, StepStatus
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
        last = cause.cause  # the last attempt's own failure, when it reported one
        if kind == "SCHEDULE_TO_CLOSE":
            reason = last.message if isinstance(last, ApplicationError) else "no attempt succeeded"
            return f"still failing when the step's outage budget ran out: {reason}", details
        return f"activity timed out ({kind}); the worker may have died", details
    details["type"] = type(cause).__name__ if cause else "ActivityError"
    return str(cause or err), details


class ProvisioningWorkflow:
    """Not a workflow by itself: the shared body of ``ProvisionProjectWorkflow`` and
    ``ProvisionUserWorkflow`` (handlers defined here are inherited by both). Its whole state is
    one ``ProvisionState``, which the ``state`` query returns."""

    STEPS: ClassVar[tuple[StepSpec, ...]] = ()

    def __init__(self) -> None:
        self._state = ProvisionState(
            steps={s.name: StepStatus.PENDING for s in self.STEPS},
            generations={s.name: 0 for s in self.STEPS},
        )

    # ------------------------------------------------------------------ handlers
    @workflow.query(name=STATE_QUERY)
    def state(self) -> ProvisionState:
        return self._state

    @workflow.signal(name=RETRY_SIGNAL)
    def retry(self, request: RetryRequest) -> None:
        """Resume from the failed step. Ignored (and logged) while nothing has failed."""
        if self._state.failed_step is None or self._state.retry_pending:
            workflow.logger.info("retry signal ignored: no failed step is waiting")
            return
        self._request_retry(request)

    @workflow.update(name=RETRY_UPDATE)
    async def retry_failed_step(self, request: RetryRequest) -> RetryResult:
        """Like the ``retry`` signal, but the caller learns which step resumes (or why not)."""
        step = self._state.failed_step
        assert step is not None
        self._request_retry(request)
        # Answer once the step is pending again (mirror written), not merely requested.
        await workflow.wait_condition(lambda: self._state.steps.get(step) != StepStatus.FAILED)
        return RetryResult(step_name=step)

    @retry_failed_step.validator
    def _validate_retry(self, request: RetryRequest) -> None:
        st = self._state
        if st.failed_step is None:
            raise ValueError(f"nothing to retry: the run is {st.status} and no step has failed")
        if st.retry_pending:
            raise ValueError(f"a retry of {st.failed_step} is already under way")

    def _request_retry(self, request: RetryRequest) -> None:
        workflow.logger.info(
            "retry of %s requested by %s: %s",
            self._state.failed_step, request.requested_by or "?", request.reason or "-",
        )
        self._state.retry_pending = True
        self._state.retries_requested += 1

    # --------------------------------------------------------------------- body
    async def _provision(self, input: ProvisionInput) -> ProvisionResult:
        st = self._state
        st.project_id, st.tenant_id = input.project_id, input.tenant_id
        await self._mirror(BEGIN_PROVISIONING, BeginInput(
            input.project_id, list(st.steps), seq=self._next_status_write()
        ))
        st.status = ProjectStatus.PROVISIONING
        for spec in self.STEPS:
            await self._run_until_done(spec, input)
        await self._set_status(ProjectStatus.ONLINE)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ProvisionResult(input.project_id, st.status, dict(st.steps))

    async def _run_until_done(self, spec: StepSpec, input: ProvisionInput) -> None:
        """Run one step; on final failure mark it failed and wait for a retry, then run again."""
        st = self._state
        while True:
            st.steps[spec.name] = StepStatus.RUNNING
            generation = st.generations[spec.name]
            try:
                result = await workflow.execute_activity(
                    spec.activity,
                    StepInput(input.project_id, generation=generation),
                    **spec.activity_options(input),
                )
                st.steps[spec.name] = result.status
                return
            except ActivityError as err:
                message, details = describe_activity_error(err)
                await self._fail_and_wait(spec.name, generation, message, details)

    async def _fail_and_wait(self, step: str, generation: int, message: str, details: dict[str, Any]) -> None:
        st = self._state
        st.steps[step] = StepStatus.FAILED
        st.failed_step, st.last_error = step, message
        await self._mirror(MARK_STEP, MarkStepInput(
            st.project_id, step, StepStatus.FAILED, message, details, generation=generation
        ))
        await self._set_status(ProjectStatus.FAILED)
        workflow.logger.warning("step %s failed, waiting for a retry: %s", step, message)
        await workflow.wait_condition(lambda: st.retry_pending)
        st.generations[step] = generation + 1
        await self._mirror(MARK_STEP, MarkStepInput(
            st.project_id, step, StepStatus.PENDING, generation=generation + 1
        ))
        await self._set_status(ProjectStatus.PROVISIONING)
        st.steps[step] = StepStatus.PENDING
        st.failed_step = None
        st.retry_pending = False

    async def _set_status(self, status: ProjectStatus) -> None:
        await self._mirror(SET_PROJECT_STATUS, ProjectStatusInput(
            self._state.project_id, status, seq=self._next_status_write()
        ))
        self._state.status = status

    def _next_status_write(self) -> int:
        self._state.status_writes += 1
        return self._state.status_writes

    async def _mirror(self, activity: Any, arg: Any) -> None:
        await workflow.execute_activity(
            activity, arg, start_to_close_timeout=MIRROR_TIMEOUT, retry_policy=MIRROR_RETRY
        )
