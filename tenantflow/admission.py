"""Admission: a cap on provisioning runs in flight, so a burst of new tenants is served in the
order it arrived instead of every tenant sharing the workers and all finishing near the end.

A run is *in flight* from the moment it is let in (``projects.admitted_at``) until its tenant
leaves ``pending``/``provisioning`` (online, failed and waiting for a person, being deleted). The
API lets a new tenant's run in at once while fewer than ``max_runs_in_flight`` are in flight and
no older tenant waits (``Store.admit``); otherwise the tenant stays ``pending`` and this loop, in
every worker, lets the waiting tenants in oldest first as runs finish (``Store.admit_waiting``),
and starts their runs. Both decide under one Postgres advisory lock, so the cap holds across any
number of API processes and workers.

A tenant let in whose start then failed (Temporal unreachable) is the reconciler's: it is
``pending`` with no run, like a create whose start failed in the API.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client

from tenantflow.periodic import every
from tenantflow.settings import Settings
from tenantflow.store import Store
from tenantflow.temporal import start_provisioning

log = logging.getLogger(__name__)


class Admission:
    """Lets waiting tenants in as runs finish, and starts their runs."""

    def __init__(self, store: Store, client: Client, settings: Settings) -> None:
        self.store, self.client, self.settings = store, client, settings

    async def run_once(self) -> list[str]:
        """One pass; returns the workflow ids it started, oldest tenant first."""
        if not self.settings.max_runs_in_flight:
            return []  # no cap: the API lets every tenant in (the reconciler starts any left waiting)
        started: list[str] = []
        for project in await self.store.admit_waiting(cap=self.settings.max_runs_in_flight):
            await start_provisioning(self.client, self.settings, project)
            started.append(project.workflow_id)
        if started:
            log.info("let in %d waiting tenant(s): %s", len(started), ", ".join(started))
        return started

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop`` is set; an outage of Temporal or the mirror is waited out."""
        await every(self.settings.admission_interval_seconds, stop, self.run_once, what="admission")
