"""Activities the workflows themselves use to keep the mirror true (begin a run, project status,
the step rows they must write themselves: reset for a retry, failed after a timeout the activity
never saw, the end of a deprovisioning), and the first teardown step, which stops a tenant's
provisioning run."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.mirror import StepActivities, step
from tenantflow.catalog import ProjectStatus, RunKind, StepName, StepStatus
from tenantflow.contracts import BeginInput, MarkStepInput, ProjectStatusInput, StepInput, StepResult
from tenantflow.errors import NotReady, ServiceUnavailable

# How often stop_provisioning looks whether the cancelled run has ended.
STOP_POLL_SECONDS = 0.5


class ProjectActivities(StepActivities):
    @activity.defn(name="begin_provisioning")  # the name of the first release: replay-safe
    async def begin_provisioning(self, input: BeginInput) -> None:
        """A run begins: every step of it has a row (pending if new); the tenant takes the run's
        status (``provisioning``, or ``deprovisioning``)."""
        project_id = uuid.UUID(input.project_id)
        if not await self.deps.store.begin_run(project_id, input.steps, ProjectStatus(input.status),
                                               seq=input.seq):
            raise NotReady(f"project {project_id} does not exist in the mirror")

    @activity.defn(name="set_project_status")
    async def set_project_status(self, input: ProjectStatusInput) -> None:
        await self.deps.store.set_project_status(
            uuid.UUID(input.project_id), ProjectStatus(input.status), seq=input.seq
        )

    @activity.defn(name="finish_deprovisioning")
    async def finish_deprovisioning(self, input: ProjectStatusInput) -> None:
        """Every stored secret of the tenant destroyed and the tenant ``deleted``, in one transaction."""
        await self.deps.store.mark_deleted(uuid.UUID(input.project_id), seq=input.seq)

    @activity.defn(name="mark_step")
    async def mark_step(self, input: MarkStepInput) -> None:
        project_id = uuid.UUID(input.project_id)
        status = StepStatus(input.status)
        if status is StepStatus.PENDING:
            await self.deps.store.step_reset(project_id, input.step_name, generation=input.generation)
        elif status is StepStatus.FAILED:
            await self.deps.store.step_failed(
                project_id, input.step_name, generation=input.generation,
                message=input.error_message or "step failed", details=input.error_details or {},
            )
        else:
            raise ValueError(f"the workflow only marks steps pending or failed, not {status}")

    @step(StepName.STOP_PROVISIONING)
    async def stop_provisioning(self, input: StepInput) -> StepResult:
        """Cancel the tenant's provisioning run if it is still going and wait until it has ended
        (its in-flight step is cancelled and waited for, so it creates nothing more); its steps
        left open are marked cancelled. A run that ended, or never started, is fine as it is."""
        project = await self.load_project(input)
        handle = activity.client().get_workflow_handle(project.workflow_id)
        cancelled = False
        while True:
            status = await _run_status(handle)
            if status is None or status != WorkflowExecutionStatus.RUNNING:
                break
            if not cancelled:
                await handle.cancel()
                cancelled = True
            activity.heartbeat({"waiting_for": "the provisioning run to stop"})
            await asyncio.sleep(STOP_POLL_SECONDS)
        reopened = await self.deps.store.cancel_open_steps(project.id, RunKind.PROVISION)
        return StepResult(status=StepStatus.SUCCESS, details={
            "provision_run": status.name.lower() if status else "never started",
            "cancelled": cancelled, "steps_left_unfinished": reopened,
        })


async def _run_status(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionStatus | None:
    """The run's status, None if Temporal has no such run; Temporal being unreachable is an outage."""
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise ServiceUnavailable(f"Temporal answered {exc.status.name} while stopping the run",
                                 details={"service": "temporal", "status": exc.status.name}) from exc
    return description.status
