"""The reconciler: no tenant is left without its run.

The API writes a tenant's row, then starts its run. When Temporal is down the start fails (the
client gets a 503) but the row stays, ``pending`` and holding its name, with no run to move it; a
DELETE likewise sets ``deprovisioning`` before starting the deprovisioning run. Every worker
process runs this loop: every ``reconcile_interval_seconds`` it takes the tenants ``pending`` or
``deprovisioning`` for longer than ``reconcile_after_seconds`` and, for each whose run Temporal does
not know, starts it under its usual workflow id. Several workers racing start one run (the id
conflict policy attaches), and the client's own retry racing us is just as harmless.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tenantflow.catalog import ProjectStatus
from tenantflow.models import Project, utcnow
from tenantflow.periodic import every
from tenantflow.settings import Settings
from tenantflow.store import Store, deprovision_workflow_id
from tenantflow.temporal import start_deprovisioning, start_provisioning

log = logging.getLogger(__name__)


class Reconciler:
    """Finds tenants whose run was never started, and starts it."""

    def __init__(self, store: Store, client: Client, settings: Settings) -> None:
        self.store, self.client, self.settings = store, client, settings

    async def run_once(self) -> list[str]:
        """One pass; returns the workflow ids it started."""
        cutoff = utcnow() - timedelta(seconds=self.settings.reconcile_after_seconds)
        started: list[str] = []
        # With no cap, tenants left waiting from when there was one are the reconciler's too.
        waiting = not self.settings.max_runs_in_flight
        for project in await self.store.stalled_projects(updated_before=cutoff, waiting_too=waiting):
            workflow_id = _run_id_of(project)
            if await self._exists(workflow_id):
                continue
            if project.status == ProjectStatus.PENDING:
                await start_provisioning(self.client, self.settings, project)
            else:
                await start_deprovisioning(self.client, self.settings, project)
            log.warning("started the lost run %s of tenant %s (%s since %s)",
                        workflow_id, project.name, project.status, project.updated_at.isoformat())
            started.append(workflow_id)
        return started

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop`` is set; an outage of Temporal or the mirror is waited out."""
        await every(self.settings.reconcile_interval_seconds, stop, self.run_once, what="reconciler")

    async def _exists(self, workflow_id: str) -> bool:
        try:
            await self.client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True


def _run_id_of(project: Project) -> str:
    if project.status == ProjectStatus.PENDING:
        return project.workflow_id
    return deprovision_workflow_id(project.id, project.kind, project.name)
