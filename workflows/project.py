"""``ProvisionProjectWorkflow``: the nine steps that bring up a project tenant."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tenantflow.catalog import WorkflowName
    from tenantflow.contracts import ProvisionInput, ProvisionResult
    from workflows.base import ProvisioningWorkflow
    from workflows.steps import PROJECT_STEPS


@workflow.defn(name=WorkflowName.PROVISION_PROJECT)
class ProvisionProjectWorkflow(ProvisioningWorkflow):
    STEPS = PROJECT_STEPS

    @workflow.run
    async def run(self, input: ProvisionInput) -> ProvisionResult:
        return await self._provision(input)
