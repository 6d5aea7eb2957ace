"""Starting provisioning runs: shared by the project API and the signup webhook."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from tenantflow.catalog import PROVISION_WORKFLOW_BY_KIND
from tenantflow.contracts import ProvisionInput
from tenantflow.models import Project
from tenantflow.settings import Settings

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


async def start_provisioning(client: Client, settings: Settings, project: Project) -> WorkflowHandle:
    """Start the project's run, or attach to it if it is already running.

    The workflow id is derived from the project id, and an id conflict means "use the existing
    run": so a repeated or concurrent request never starts a second run, and a request that
    crashed between inserting the row and starting the workflow is healed by the next one.
    """
    return await client.start_workflow(
        PROVISION_WORKFLOW_BY_KIND[project.kind],
        ProvisionInput(
            project_id=str(project.id),
            tenant_id=project.name,
            retry_initial_interval_seconds=settings.step_retry_initial_interval_seconds,
            heartbeat_timeout_seconds=settings.step_heartbeat_timeout_seconds,
            outage_budget_seconds=settings.step_outage_budget_seconds,
        ),
        id=project.workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes([SearchAttributePair(TENANT_ID, project.name)]),
    )
