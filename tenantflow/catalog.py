"""tenantflow's vocabulary, defined once: tenant kinds, statuses, step names and their order.

Everything above this module (the mirror tables, the activities' ``@step``, the workflows'
``StepSpec`` catalog, the API, the worker) imports these names instead of spelling them. It imports
nothing of the project, so the API and the workflow sandbox can load it without loading activities.
"""

from __future__ import annotations

from enum import StrEnum


class ProjectKind(StrEnum):
    """What a tenant is: a project, or a signed-up user with a per-user graph database."""

    PROJECT = "project"
    USER = "user"


class ProjectStatus(StrEnum):
    """``projects.status``: where a tenant's run stands."""

    PENDING = "pending"
    PROVISIONING = "provisioning"
    ONLINE = "online"
    FAILED = "failed"  # stopped at a step, waiting for a person's retry


class StepStatus(StrEnum):
    """``provisioning_steps.status``. The state machine (one writer per arrow)::

        PENDING ──attempt starts──▶ RUNNING ──▶ SUCCESS | SKIPPED
           ▲                          │
           ├──attempt failed, will────┤   (the last attempt's error stays on the row)
           │  be retried by Temporal  │
           │                          ▼ the workflow: retries exhausted or non-retryable
           └──────operator retry──── FAILED   (waits for a person)
    """

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


class AttemptOutcome(StrEnum):
    """``provisioning_step_attempts.outcome``: how one attempt of a step ended."""

    SUCCESS = "success"
    SKIPPED = "skipped"
    FAILED = "failed"  # error_details.retryable says whether Temporal tried again
    LOST = "lost"  # never reported back (worker died or paused): a later attempt or the workflow closed it


class GraphStatus(StrEnum):
    """``projects.graph_status``: the tenant's graph database as the graph steps last saw it."""

    PROVISIONING = "provisioning"
    ONLINE = "online"
    FAILED = "failed"


class WorkflowName(StrEnum):
    """Temporal workflow types. The API starts and addresses runs by these names, so it never
    imports workflow (and through it activity) code."""

    PROVISION_PROJECT = "ProvisionProjectWorkflow"
    PROVISION_USER = "ProvisionUserWorkflow"


PROVISION_WORKFLOW_BY_KIND: dict[str, WorkflowName] = {
    ProjectKind.PROJECT: WorkflowName.PROVISION_PROJECT,
    ProjectKind.USER: WorkflowName.PROVISION_USER,
}
# The provisioning runs' message handlers (tenantflow.contracts holds their payloads).
RETRY_SIGNAL = "retry"
RETRY_UPDATE = "retry_failed_step"
STATE_QUERY = "state"


class StepName(StrEnum):
    """Every provisioning step; the value is also the step's Temporal activity name."""

    CREATE_TENANT_DATABASE = "create_tenant_database"
    CREATE_TENANT_SCHEMA = "create_tenant_schema"
    CREATE_GRAPH_DATABASE = "create_graph_database"
    WAIT_GRAPH_DATABASE_ONLINE = "wait_graph_database_online"
    GENERATE_API_KEYS = "generate_api_keys"
    REGISTER_AUTH_SERVICE = "register_auth_service"
    REGISTER_REALTIME_SERVICE = "register_realtime_service"
    REGISTER_STORAGE_SERVICE = "register_storage_service"
    VERIFY_SERVICES = "verify_services"


# The steps a tenant of each kind goes through, in the order they run (rows are created up
# front and shown in this order). ``generate_api_keys`` precedes the registrations: auth,
# realtime and storage are registered with the tenant's JWT secret and keys.
PROJECT_STEP_NAMES: tuple[StepName, ...] = (
    StepName.CREATE_TENANT_DATABASE,
    StepName.CREATE_TENANT_SCHEMA,
    StepName.CREATE_GRAPH_DATABASE,
    StepName.WAIT_GRAPH_DATABASE_ONLINE,
    StepName.GENERATE_API_KEYS,
    StepName.REGISTER_AUTH_SERVICE,
    StepName.REGISTER_REALTIME_SERVICE,
    StepName.REGISTER_STORAGE_SERVICE,
    StepName.VERIFY_SERVICES,
)
USER_STEP_NAMES: tuple[StepName, ...] = (StepName.CREATE_GRAPH_DATABASE, StepName.WAIT_GRAPH_DATABASE_ONLINE)
STEPS_BY_KIND: dict[str, tuple[StepName, ...]] = {
    ProjectKind.PROJECT: PROJECT_STEP_NAMES,
    ProjectKind.USER: USER_STEP_NAMES,
}
