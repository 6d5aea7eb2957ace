"""``DeprovisionProjectWorkflow`` and ``DeprovisionUserWorkflow``: take a tenant down in reverse
order, on the same step machinery as provisioning (mirrored steps, waits for a person's retry on
a final failure). Every teardown step is idempotent, so a tenant in any state can be deprovisioned:
online, failed and waiting (its run is cancelled first), or half-made after a crash."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tenantflow.catalog import WorkflowName
    from tenantflow.contracts import ProvisionInput, ProvisionResult
    from workflows.base import DeprovisioningWorkflow
    from workflows.steps import PROJECT_TEARDOWN, USER_TEARDOWN


@workflow.defn(name=WorkflowName.DEPROVISION_PROJECT)
class DeprovisionProjectWorkflow(DeprovisioningWorkflow):
    STEPS = PROJECT_TEARDOWN

    @workflow.run
    async def run(self, input: ProvisionInput) -> ProvisionResult:
        return await self._deprovision(input)


@workflow.defn(name=WorkflowName.DEPROVISION_USER)
class DeprovisionUserWorkflow(DeprovisioningWorkflow):
    STEPS = USER_TEARDOWN

    @workflow.run
    async def run(self, input: ProvisionInput) -> ProvisionResult:
        return await self._deprovision(input)
