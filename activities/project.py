"""Activities the workflow itself uses to keep the mirror true: begin, project status, step
rows it must write itself (reset for a retry; failed after a timeout the activity never saw)."""

from __future__ import annotations

import uuid

from temporalio import activity

from activities.mirror import StepActivities
from tenantflow.contracts import BeginInput, MarkStepInput, ProjectStatusInput
from tenantflow.errors import NotReady
from tenantflow.models import ProjectStatus, StepStatus


class ProjectActivities(StepActivities):
    @activity.defn(name="begin_provisioning")
    async def begin_provisioning(self, input: BeginInput) -> None:
        """Project → provisioning; every step of the run has a row (pending if new)."""
        project_id = uuid.UUID(input.project_id)
        if await self.deps.store.get_project(project_id) is None:
            raise NotReady(f"project {project_id} does not exist in the mirror")
        await self.deps.store.ensure_steps(project_id, input.steps)
        await self.deps.store.set_project_status(project_id, ProjectStatus.PROVISIONING, seq=input.seq)

    @activity.defn(name="set_project_status")
    async def set_project_status(self, input: ProjectStatusInput) -> None:
        await self.deps.store.set_project_status(
            uuid.UUID(input.project_id), ProjectStatus(input.status), seq=input.seq
        )

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
