"""TODO(owner): module docstring."""

from __future__ import annotations

from activities.mirror import StepActivities, step
from tenantflow.contracts import StepInput, StepResult


class KeyActivities(StepActivities):
    @step("generate_api_keys")
    async def generate_api_keys(self, input: StepInput) -> StepResult:
        raise NotImplementedError("generate_api_keys")

