"""``ProvisionUserWorkflow``: a per-user graph database, on the same step machinery."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tenantflow.contracts import ProvisionInput, ProvisionResult
    from workflows.base import ProvisioningWorkflow
    from workflows.steps import USER_STEPS


@workflow.defn
class ProvisionUserWorkflow(ProvisioningWorkflow):
    STEPS = USER_STEPS

    @workflow.run
    async def run(self, input: ProvisionInput) -> ProvisionResult:
        return await self._provision(input)
