"""``ProvisionUserWorkflow``: a per-user graph database, on the same step machinery."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tenantflow.catalog import WorkflowName
    from tenantflow.contracts import ProvisionInput, ProvisionResult
    from workflows.base import ProvisioningWorkflow
    from workflows.steps import USER_STEPS


@workflow.defn(name=WorkflowName.PROVISION_USER)
class ProvisionUserWorkflow(ProvisioningWorkflow):
    STEPS = USER_STEPS

    @workflow.run
    async def run(self, input: ProvisionInput) -> ProvisionResult:
        return await self._provision(input)
