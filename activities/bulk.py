"""The mirror read behind bulk operations: which runs wait for a person."""

from __future__ import annotations

from temporalio import activity

from activities.mirror import StepActivities
from tenantflow.contracts import TenantFilter, WaitingRun


class BulkActivities(StepActivities):
    @activity.defn(name="find_waiting_runs")
    async def find_waiting_runs(self, filter: TenantFilter) -> list[WaitingRun]:
        """Runs waiting on a failed step that match ``filter`` (ids and names only)."""
        return await self.deps.store.waiting_runs(filter)
