"""TODO(owner): module docstring."""

from __future__ import annotations

from activities.mirror import StepActivities, step
from tenantflow.contracts import StepInput, StepResult


class GraphActivities(StepActivities):
    @step("create_graph_database")
    async def create_graph_database(self, input: StepInput) -> StepResult:
        raise NotImplementedError("create_graph_database")

    @step("wait_graph_database_online")
    async def wait_graph_database_online(self, input: StepInput) -> StepResult:
        raise NotImplementedError("wait_graph_database_online")

