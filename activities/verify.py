"""TODO(owner): module docstring."""

from __future__ import annotations

from activities.mirror import StepActivities, step
from tenantflow.contracts import StepInput, StepResult


class VerifyActivities(StepActivities):
    @step("verify_services")
    async def verify_services(self, input: StepInput) -> StepResult:
        raise NotImplementedError("verify_services")

