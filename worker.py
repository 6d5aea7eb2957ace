"""The tenantflow worker: every workflow and activity, registered explicitly.

Run with ``python worker.py`` (settings from ``TENANTFLOW_*``). It can be killed at any time:
a new worker picks the runs up where Temporal left them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.bulk import BulkActivities
from activities.deps import Deps
from activities.graph import GraphActivities
from activities.keys import KeyActivities
from activities.mirror import HEARTBEATS_PER_TIMEOUT
from activities.notify import NotifyActivities
from activities.project import ProjectActivities
from activities.services import ServiceActivities
from activities.tenant_postgres import TenantPostgresActivities
from activities.verify import VerifyActivities
from tenantflow import telemetry
from tenantflow.admission import Admission
from tenantflow.reconcile import Reconciler
from tenantflow.settings import Settings, get_settings
from tenantflow.temporal import connect
from workflows.bulk_retry import RetryFailedWorkflow
from workflows.deprovision import DeprovisionProjectWorkflow, DeprovisionUserWorkflow
from workflows.events import DeliverEventWorkflow
from workflows.project import ProvisionProjectWorkflow
from workflows.user import ProvisionUserWorkflow

WORKFLOWS: list[type] = [
    ProvisionProjectWorkflow,
    ProvisionUserWorkflow,
    DeprovisionProjectWorkflow,
    DeprovisionUserWorkflow,
    RetryFailedWorkflow,
    DeliverEventWorkflow,
]


def activities_for(deps: Deps) -> Sequence[Callable[..., Any]]:
    """Every activity, bound to this worker's dependencies."""
    project = ProjectActivities(deps)
    bulk = BulkActivities(deps)
    tenant_pg = TenantPostgresActivities(deps)
    graph = GraphActivities(deps)
    keys = KeyActivities(deps)
    services = ServiceActivities(deps)
    verify = VerifyActivities(deps)
    notify = NotifyActivities(deps)
    return [
        project.begin_provisioning,
        project.set_project_status,
        project.mark_step,
        project.finish_deprovisioning,
        project.stop_provisioning,
        bulk.find_waiting_runs,
        tenant_pg.create_tenant_database,
        tenant_pg.create_tenant_schema,
        graph.create_graph_database,
        graph.wait_graph_database_online,
        keys.generate_api_keys,
        services.register_auth_service,
        services.register_realtime_service,
        services.register_storage_service,
        verify.verify_services,
        services.deregister_storage_service,
        services.deregister_realtime_service,
        services.deregister_auth_service,
        keys.delete_api_keys,
        graph.drop_graph_database,
        tenant_pg.drop_tenant_database,
        notify.deliver_event,
    ]


def build_worker(client: Client, settings: Settings, deps: Deps, **options: Any) -> Worker:
    """The worker for ``settings.task_queue``; ``options`` go to ``Worker`` (tests use them).

    Heartbeats: the SDK sends a step's heartbeats at most every 0.8 × its heartbeat timeout by
    default, which leaves a fifth of the timeout for the round trip: a slow Temporal server then
    times out steps that are alive and well (each costing an attempt and a back-off). Sent every
    third of the timeout instead (``activities.mirror.Heartbeat`` beats that often), a step is
    timed out only when two heartbeats in a row are lost."""
    heartbeat_every = timedelta(seconds=settings.step_heartbeat_timeout_seconds / HEARTBEATS_PER_TIMEOUT)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities_for(deps),
        **{"max_concurrent_activities": 50, "max_heartbeat_throttle_interval": heartbeat_every,
           **options},
    )


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    # The neo4j driver logs query parameters at DEBUG, and CREATE USER carries a password
    # parameter: never let its DEBUG output through, whatever the root level is.
    logging.getLogger("neo4j").setLevel(logging.INFO)
    settings = get_settings()
    deps = Deps.from_settings(settings)
    client = await connect(settings, runtime=telemetry.worker_runtime(settings))
    if settings.worker_metrics_address:
        logging.info("Temporal SDK metrics at http://%s/metrics", settings.worker_metrics_address)
    if settings.otel_exporter_otlp_endpoint:
        logging.info("tracing runs to %s", settings.otel_exporter_otlp_endpoint)
    worker = build_worker(client, settings, deps)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reconciler = Reconciler(deps.store, client, settings)
    admission = Admission(deps.store, client, settings)
    async with worker:
        logging.info("worker polling task queue %r on %s", settings.task_queue,
                     settings.temporal_address)
        loops = [asyncio.create_task(reconciler.run_forever(stop)),
                 asyncio.create_task(admission.run_forever(stop))]
        await stop.wait()
        # A pass may be long (a reconciler catching up on many tenants): stopped where it is,
        # which is safe (every start it makes is idempotent), so SIGTERM is answered at once.
        for loop_task in loops:
            loop_task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    await deps.aclose()


if __name__ == "__main__":
    asyncio.run(main())
