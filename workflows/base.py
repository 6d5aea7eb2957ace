"""The machinery every tenant run shares: run steps in order, mirror the run's status, stop at a
failed step and wait for an operator's retry, answer the ``state`` query, keep the ``TenantStatus``
and ``FailedStep`` search attributes and the run's current details (Temporal Web UI) true.

``StepsWorkflow`` is that machinery; ``ProvisioningWorkflow`` (project and user provisioning) and
``DeprovisioningWorkflow`` (teardown) say which steps run, which status the tenant has meanwhile,
and what happens at the end. Subclasses define ``STEPS`` and ``@workflow.run``.

When the run reaches a status it cannot leave without a person (``online``, ``failed``, ``deleted``)
and was started with receivers (``ProvisionInput.event_webhook_urls``), it hands a completion event
to a ``DeliverEventWorkflow`` of its own (``workflows.events`` says why a child run) and goes on.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    TimeoutError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from tenantflow.catalog import (
        DONE_STEP_STATUSES,
        EVENT_TYPE_OF_STATUS,
        KIND_OF_WORKFLOW,
        RETRY_SIGNAL,
        RETRY_UPDATE,
        STATE_QUERY,
        STATUS_SEQ_BASE,
        STEP_NEEDS,
        ProjectStatus,
        RunKind,
        StepStatus,
        WorkflowName,
    )
    from tenantflow.contracts import (
        BeginInput,
        DeliverEventInput,
        MarkStepInput,
        ProjectStatusInput,
        ProvisionInput,
        ProvisionResult,
        ProvisionState,
        RetryRequest,
        RetryResult,
        StepInput,
        TenantEvent,
        TenantEventData,
    )
    from tenantflow.search_attributes import FAILED_STEP, TENANT_STATUS
    from workflows.steps import (
        BEGIN_RUN,
        FINISH_DEPROVISIONING,
        MARK_STEP,
        MIRROR_RETRY,
        MIRROR_TIMEOUT,
        SET_PROJECT_STATUS,
        StepSpec,
    )

# Histories recorded before completion webhooks replay without the child runs they add.
EVENT_WEBHOOKS_PATCH = "event-webhooks"
# Before this, a step cancelled with its run was taken for a failed step: the run waited for a
# retry and its deletion never finished. Old histories replay that way; new runs end cancelled.
CANCEL_MID_STEP_PATCH = "cancel-mid-step"
# Before this, the run's own mirror writes were regular activities; old histories replay them so.
LOCAL_MIRROR_PATCH = "local-mirror"
# Before this, a provisioning run ran its steps one after another; old histories replay them so.
PARALLEL_STEPS_PATCH = "parallel-steps"


def _run_cancelled(err: ActivityError) -> bool:
    """Whether this step's error comes with the run's own cancellation: the step acknowledged it,
    or the run was asked to stop while the step was failing (the request is still pending on the
    run's task: its CancelledError was absorbed by the activity's wait for the cancellation)."""
    task = asyncio.current_task()
    return is_cancelled_exception(err) or (task is not None and task.cancelling() > 0)


def event_id(workflow_id: str, status_write: int) -> str:
    """The id of the event a run's ``status_write``-th status write announces: the Standard Webhooks
    ``webhook-id`` and the delivery run's workflow id. Derived, never drawn, so it is the same on every
    retry, after a worker crash and on replay; unique, as a run numbers its status writes. Holds no
    ``.`` (the spec forbids it in signed ids): workflow ids are made of validated names and uuids."""
    return f"{workflow_id}-event-{status_write}"


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


class StepsWorkflow:
    """Not a workflow by itself: the shared body of every tenant run (handlers defined here are
    inherited). Its whole state is one ``ProvisionState``, which the ``state`` query returns."""

    STEPS: ClassVar[tuple[StepSpec, ...]] = ()
    # The tenant's status while this run's steps go on.
    ACTIVE_STATUS: ClassVar[ProjectStatus] = ProjectStatus.PROVISIONING
    RUN_KIND: ClassVar[RunKind] = RunKind.PROVISION
    # Whether a step starts as soon as the steps it needs are done (catalog.STEP_NEEDS) rather
    # than after the step before it.
    PARALLEL: ClassVar[bool] = False

    def __init__(self) -> None:
        self._state = ProvisionState(
            steps={s.name: StepStatus.PENDING for s in self.STEPS},
            generations={s.name: 0 for s in self.STEPS},
            status_writes=STATUS_SEQ_BASE[self.RUN_KIND],
        )
        # Steps running side by side may fail together: one at a time waits for a person.
        self._failure_turn = asyncio.Lock()

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
    async def _run_steps(self, input: ProvisionInput) -> None:
        """Mark the run begun (step rows exist, the tenant is ``ACTIVE_STATUS``), then run every step."""
        st = self._state
        st.project_id, st.tenant_id = input.project_id, input.tenant_id
        st.event_webhook_urls = list(input.event_webhook_urls)
        await self._mirror(BEGIN_RUN, BeginInput(
            input.project_id, list(st.steps), seq=self._next_status_write(), status=self.ACTIVE_STATUS
        ))
        self._publish(self.ACTIVE_STATUS)
        if self.PARALLEL and workflow.patched(PARALLEL_STEPS_PATCH):
            await self._run_as_needed(input)
            return
        for spec in self.STEPS:
            await self._run_until_done(spec, input)

    async def _run_as_needed(self, input: ProvisionInput) -> None:
        """Run every step as soon as the steps it needs are done, each in a task of its own.

        If the run stops (cancelled: the tenant is being deleted), every step still going is
        cancelled and waited for before the run ends, so nothing is created behind the
        teardown's back."""
        st = self._state
        ours = set(st.steps)

        async def when_ready(spec: StepSpec) -> None:
            needs = [n for n in STEP_NEEDS.get(spec.name, ()) if n in ours]
            if needs:
                await workflow.wait_condition(
                    lambda: all(st.steps[n] in DONE_STEP_STATUSES for n in needs)
                )
            await self._run_until_done(spec, input)

        tasks = [asyncio.create_task(when_ready(spec)) for spec in self.STEPS]
        try:
            await asyncio.gather(*tasks)
        # Not BaseException: when the worker evicts the run from its cache, the coroutine is
        # closed (GeneratorExit), and awaiting then is refused ("coroutine ignored GeneratorExit").
        except (Exception, asyncio.CancelledError):
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

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
                if _run_cancelled(err) and workflow.patched(CANCEL_MID_STEP_PATCH):
                    # The run itself is being cancelled (the tenant is being deleted): whether the
                    # step acknowledged it or failed first, that is the run's end, not a failure
                    # to wait on (Temporal does not retry an activity of a cancelled run).
                    raise asyncio.CancelledError(f"cancelled during {spec.name}") from err
                message, details = describe_activity_error(err)
                await self._fail_and_wait(spec.name, generation, message, details)

    async def _fail_and_wait(self, step: str, generation: int, message: str, details: dict[str, Any]) -> None:
        """Mark ``step`` failed, then wait for a person's retry. Steps that failed side by side
        show ``failed`` at once, and then wait their turn: the run names one failed step at a
        time (the one a retry resumes), so a retry resumes the first, and the next is shown."""
        st = self._state
        st.steps[step] = StepStatus.FAILED
        await self._mirror(MARK_STEP, MarkStepInput(
            st.project_id, step, StepStatus.FAILED, message, details, generation=generation
        ))
        async with self._failure_turn:
            st.failed_step, st.last_error = step, message
            await self._set_status(ProjectStatus.FAILED)
            workflow.logger.warning("step %s failed, waiting for a retry: %s", step, message)
            await workflow.wait_condition(lambda: st.retry_pending)
            st.generations[step] = generation + 1
            await self._mirror(MARK_STEP, MarkStepInput(
                st.project_id, step, StepStatus.PENDING, generation=generation + 1
            ))
            st.failed_step = None
            st.retry_pending = False
            await self._set_status(self.ACTIVE_STATUS)
            st.steps[step] = StepStatus.PENDING  # the retry update answers from here on

    async def _set_status(self, status: ProjectStatus, *, activity: Any = SET_PROJECT_STATUS) -> None:
        seq = self._next_status_write()
        await self._mirror(activity, ProjectStatusInput(self._state.project_id, status, seq=seq))
        self._publish(status)
        await self._announce(status, seq)

    async def _announce(self, status: ProjectStatus, seq: int) -> None:
        """Start the delivery run of the event ``status`` calls for, if any, and not wait for it.

        No receivers (or a status that is not an event): no command at all, so runs without
        receivers and histories from before this change replay unchanged.
        """
        st = self._state
        event_type = EVENT_TYPE_OF_STATUS.get(status)
        if event_type is None or not st.event_webhook_urls or not workflow.patched(EVENT_WEBHOOKS_PATCH):
            return
        event = self._event(event_type, status, seq)
        try:
            await workflow.start_child_workflow(
                WorkflowName.DELIVER_EVENT, DeliverEventInput(event, list(st.event_webhook_urls)),
                id=event.id,
                # The delivery outlives this run (ProvisionResult is not held back by a dead receiver)
                # and its cancel (a deletion cancels a failed run, even while this start is in flight:
                # its tenant.failed still goes out); one event id is never delivered by two runs (a
                # reset replaying this point).
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                cancellation_type=workflow.ChildWorkflowCancellationType.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{event.type} {st.tenant_id}",
            )
        except WorkflowAlreadyStartedError:
            workflow.logger.info("event %s already has its delivery run", event.id)

    def _event(self, event_type: str, status: ProjectStatus, seq: int) -> TenantEvent:
        st, info = self._state, workflow.info()
        failed = status == ProjectStatus.FAILED
        return TenantEvent(
            id=event_id(info.workflow_id, seq), type=event_type, timestamp=workflow.now().isoformat(),
            data=TenantEventData(
                project_id=st.project_id, name=st.tenant_id, kind=KIND_OF_WORKFLOW[info.workflow_type],
                status=status, run_kind=self.RUN_KIND, workflow_id=info.workflow_id,
                failed_step=st.failed_step if failed else None, error=st.last_error if failed else None,
            ),
        )

    def _publish(self, status: ProjectStatus) -> None:
        """Show the run's state outside: search attributes and the Web UI's current details."""
        st = self._state
        st.status = status
        workflow.upsert_search_attributes([
            TENANT_STATUS.value_set(status),
            FAILED_STEP.value_set(st.failed_step) if st.failed_step else FAILED_STEP.value_unset(),
        ])
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        st = self._state
        if st.status != ProjectStatus.FAILED or st.failed_step is None:
            done = sum(1 for s in st.steps.values() if s in DONE_STEP_STATUSES)
            return f"**{st.tenant_id}**: {st.status}, {done} of {len(st.steps)} steps done"
        return (
            f"**{st.tenant_id}**: step `{st.failed_step}` failed and waits for a person.\n\n"
            f"Last error: {st.last_error}\n\n"
            f"Fix the cause, then retry from that step: signal `{RETRY_SIGNAL}` "
            f"(`temporal workflow signal --workflow-id {workflow.info().workflow_id} "
            f"--name {RETRY_SIGNAL} --input '{{}}'`) or `POST /v1/projects/{st.tenant_id}/retry`."
        )

    def _next_status_write(self) -> int:
        self._state.status_writes += 1
        return self._state.status_writes

    async def _mirror(self, activity: Any, arg: Any) -> None:
        """The run's own bookkeeping (begin, status, a step's final mark): short writes to the
        mirror. As local activities they run in the worker that runs the workflow, without a round
        trip through the task queue (about 30 ms each on the dev stack); a worker that dies mid-way
        loses nothing, the next one runs them again (they are idempotent and fenced)."""
        if workflow.patched(LOCAL_MIRROR_PATCH):
            await workflow.execute_local_activity(
                activity, arg, start_to_close_timeout=MIRROR_TIMEOUT, retry_policy=MIRROR_RETRY
            )
            return
        await workflow.execute_activity(
            activity, arg, start_to_close_timeout=MIRROR_TIMEOUT, retry_policy=MIRROR_RETRY
        )


class ProvisioningWorkflow(StepsWorkflow):
    """Brings a tenant up: its steps, each as soon as the steps it needs are done, then
    ``online``. Cancelled by a deprovisioning run (which waits for it to stop): in-flight steps
    are cancelled and waited for, nothing more is created."""

    PARALLEL = True

    async def _provision(self, input: ProvisionInput) -> ProvisionResult:
        try:
            await self._run_steps(input)
        except asyncio.CancelledError:
            # The tenant is being deleted; this run no longer says anything about it.
            self._state.failed_step = None
            self._publish(ProjectStatus.DEPROVISIONING)
            raise
        await self._set_status(ProjectStatus.ONLINE)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ProvisionResult(input.project_id, self._state.status, dict(self._state.steps))


class DeprovisioningWorkflow(StepsWorkflow):
    """Takes a tenant down: stop its provisioning run, tear down in reverse order, destroy every
    stored secret, then ``deleted`` (the row stays for audit; the name is free again)."""

    ACTIVE_STATUS = ProjectStatus.DEPROVISIONING
    RUN_KIND = RunKind.DEPROVISION

    async def _deprovision(self, input: ProvisionInput) -> ProvisionResult:
        await self._run_steps(input)
        await self._set_status(ProjectStatus.DELETED, activity=FINISH_DEPROVISIONING)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ProvisionResult(input.project_id, self._state.status, dict(self._state.steps))
