"""TODO(owner): module docstring."""

from __future__ import annotations

from activities.mirror import StepActivities, step
from tenantflow.contracts import StepInput, StepResult


class ServiceActivities(StepActivities):
    @step("register_auth_service")
    async def register_auth_service(self, input: StepInput) -> StepResult:
        raise NotImplementedError("register_auth_service")

    @step("register_realtime_service")
    async def register_realtime_service(self, input: StepInput) -> StepResult:
        raise NotImplementedError("register_realtime_service")

    @step("register_storage_service")
    async def register_storage_service(self, input: StepInput) -> StepResult:
        raise NotImplementedError("register_storage_service")

