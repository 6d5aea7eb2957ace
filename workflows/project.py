"""``ProvisionProjectWorkflow``: the nine steps that bring up a project tenant."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tenantflow.contracts import ProvisionInput, ProvisionResult
    from workflows.base import ProvisioningWorkflow
    from workflows.steps import PROJECT_STEPS


@workflow.defn
class ProvisionProjectWorkflow(ProvisioningWorkflow):
    STEPS = PROJECT_STEPS

    @workflow.run
    async def run(self, input: ProvisionInput) -> ProvisionResult:
        return await self._provision(input)
