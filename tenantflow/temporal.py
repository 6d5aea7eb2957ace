"""Connecting to Temporal, and starting tenant runs (provisioning, deprovisioning): shared by the API,
the webhook and the worker."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.runtime import Runtime

from tenantflow import telemetry
from tenantflow.catalog import DEPROVISION_WORKFLOW_BY_KIND, PROVISION_WORKFLOW_BY_KIND
from tenantflow.contracts import ProvisionInput
from tenantflow.models import Project
from tenantflow.search_attributes import TENANT_ID
from tenantflow.settings import Settings
from tenantflow.store import deprovision_workflow_id


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client of ``settings``' Temporal namespace, tracing runs if tracing is configured.

    Args:
        settings: Where Temporal is, and whether to trace (``tenantflow.telemetry``).
        runtime: The Temporal runtime (``telemetry.worker_runtime`` for the worker's metrics;
            None: the process' default runtime).
    """
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=telemetry.tracing_interceptors(settings),
        runtime=runtime,
    )


async def start_provisioning(client: Client, settings: Settings, project: Project) -> WorkflowHandle:
    """Start the project's provisioning run, or attach to it if it is already running.

    The workflow id is derived from the project id, and an id conflict means "use the existing
    run": so a repeated or concurrent request never starts a second run, and a request that
    crashed between inserting the row and starting the workflow is healed by the next one.
    """
    return await _start(
        client, settings, project, PROVISION_WORKFLOW_BY_KIND[project.kind], project.workflow_id,
        summary=f"provision {project.kind} {project.name}",
    )


async def start_deprovisioning(client: Client, settings: Settings, project: Project) -> WorkflowHandle:
    """Start the tenant's deprovisioning run, or attach to the one already going (same rule)."""
    return await _start(
        client, settings, project, DEPROVISION_WORKFLOW_BY_KIND[project.kind],
        deprovision_workflow_id(project.id, project.kind, project.name),
        summary=f"deprovision {project.kind} {project.name}",
    )


async def _start(
    client: Client, settings: Settings, project: Project, workflow: str, workflow_id: str, *, summary: str
) -> WorkflowHandle:
    return await client.start_workflow(
        workflow,
        ProvisionInput(
            project_id=str(project.id),
            tenant_id=project.name,
            retry_initial_interval_seconds=settings.step_retry_initial_interval_seconds,
            heartbeat_timeout_seconds=settings.step_heartbeat_timeout_seconds,
            outage_budget_seconds=settings.step_outage_budget_seconds,
            event_webhook_urls=list(settings.event_webhook_urls),
        ),
        id=workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(TENANT_ID, project.name)]),
        static_summary=summary,
    )
