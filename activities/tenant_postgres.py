"""TODO(owner): module docstring."""

from __future__ import annotations

from activities.mirror import StepActivities, step
from tenantflow.contracts import StepInput, StepResult


class TenantPostgresActivities(StepActivities):
    @step("create_tenant_database")
    async def create_tenant_database(self, input: StepInput) -> StepResult:
        raise NotImplementedError("create_tenant_database")

    @step("create_tenant_schema")
    async def create_tenant_schema(self, input: StepInput) -> StepResult:
        raise NotImplementedError("create_tenant_schema")

