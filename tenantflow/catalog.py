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
    DEPROVISIONING = "deprovisioning"
    DELETED = "deleted"  # everything it had is gone; the row stays for audit, the name is free


# Statuses a tenant stays in until a person (or the platform) acts: a run watched for its end
# (the event stream, a long poll, the CLI's --wait) is over when it reaches one of these.
SETTLED_STATUSES: frozenset[str] = frozenset(
    {ProjectStatus.ONLINE, ProjectStatus.FAILED, ProjectStatus.DELETED}
)


class EventKind(StrEnum):
    """``project_events.kind``: what changed (the Server-Sent Events' ``event:`` field)."""

    STEP = "step"  # a step row: its status, attempt or error
    STATUS = "status"  # the tenant's status
    END = "end"  # not stored: the stream's last message once the tenant is settled


# The Postgres NOTIFY channel the mirror's triggers signal on (payload: the project id).
EVENTS_CHANNEL = "tenantflow_events"


class Scope(StrEnum):
    """What an API key may do; each scope includes the ones below it (``SCOPE_RANK``)."""

    READ = "read"  # list and read tenants, their steps and events
    WRITE = "write"  # create, retry, cancel, delete tenants; bulk retry
    ADMIN = "admin"  # connection details (secrets) and API keys themselves


SCOPE_RANK: dict[str, int] = {Scope.READ: 1, Scope.WRITE: 2, Scope.ADMIN: 3}


class RunKind(StrEnum):
    """Which run a step row belongs to (``provisioning_steps.run_kind``)."""

    PROVISION = "provision"
    DEPROVISION = "deprovision"


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


# A step in one of these is done: the steps that need it may start, and it counts as done.
DONE_STEP_STATUSES: frozenset[str] = frozenset({StepStatus.SUCCESS, StepStatus.SKIPPED})


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
    DELETED = "deleted"


class WorkflowName(StrEnum):
    """Temporal workflow types. The API starts and addresses runs by these names, so it never
    imports workflow (and through it activity) code."""

    PROVISION_PROJECT = "ProvisionProjectWorkflow"
    PROVISION_USER = "ProvisionUserWorkflow"
    DEPROVISION_PROJECT = "DeprovisionProjectWorkflow"
    DEPROVISION_USER = "DeprovisionUserWorkflow"
    RETRY_FAILED = "RetryFailedWorkflow"
    DELIVER_EVENT = "DeliverEventWorkflow"


PROVISION_WORKFLOW_BY_KIND: dict[str, WorkflowName] = {
    ProjectKind.PROJECT: WorkflowName.PROVISION_PROJECT,
    ProjectKind.USER: WorkflowName.PROVISION_USER,
}
DEPROVISION_WORKFLOW_BY_KIND: dict[str, WorkflowName] = {
    ProjectKind.PROJECT: WorkflowName.DEPROVISION_PROJECT,
    ProjectKind.USER: WorkflowName.DEPROVISION_USER,
}
KIND_OF_WORKFLOW: dict[str, ProjectKind] = {
    workflow: ProjectKind(kind)
    for by_kind in (PROVISION_WORKFLOW_BY_KIND, DEPROVISION_WORKFLOW_BY_KIND)
    for kind, workflow in by_kind.items()
}
# The provisioning runs' message handlers (tenantflow.contracts holds their payloads).
PROGRESS_QUERY = "progress"  # RetryFailedWorkflow
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
    # Teardown (deprovisioning), each idempotent: gone already counts as success.
    STOP_PROVISIONING = "stop_provisioning"
    DEREGISTER_STORAGE_SERVICE = "deregister_storage_service"
    DEREGISTER_REALTIME_SERVICE = "deregister_realtime_service"
    DEREGISTER_AUTH_SERVICE = "deregister_auth_service"
    DELETE_API_KEYS = "delete_api_keys"
    DROP_GRAPH_DATABASE = "drop_graph_database"
    DROP_TENANT_DATABASE = "drop_tenant_database"


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
# What each provisioning step needs done before it starts; a step starts as soon as its needs are
# done, so steps that need nothing of each other run at the same time (a step not listed needs
# nothing). The tenant database chain, the graph chain and the keys are independent; each
# registration hands its service the tenant's database (migrated) and keys; verification checks
# everything. Teardown runs one step after another, in the order above.
STEP_NEEDS: dict[StepName, tuple[StepName, ...]] = {
    StepName.CREATE_TENANT_SCHEMA: (StepName.CREATE_TENANT_DATABASE,),
    StepName.WAIT_GRAPH_DATABASE_ONLINE: (StepName.CREATE_GRAPH_DATABASE,),
    StepName.REGISTER_AUTH_SERVICE: (StepName.CREATE_TENANT_SCHEMA, StepName.GENERATE_API_KEYS),
    StepName.REGISTER_REALTIME_SERVICE: (StepName.CREATE_TENANT_SCHEMA, StepName.GENERATE_API_KEYS),
    StepName.REGISTER_STORAGE_SERVICE: (StepName.CREATE_TENANT_SCHEMA, StepName.GENERATE_API_KEYS),
    StepName.VERIFY_SERVICES: tuple(n for n in PROJECT_STEP_NAMES if n != StepName.VERIFY_SERVICES),
}
STEPS_BY_KIND: dict[str, tuple[StepName, ...]] = {
    ProjectKind.PROJECT: PROJECT_STEP_NAMES,
    ProjectKind.USER: USER_STEP_NAMES,
}
# Teardown in reverse order of creation. ``stop_provisioning`` first: a provision run still in
# flight is cancelled and waited for, so nothing is created after its teardown.
PROJECT_TEARDOWN_STEP_NAMES: tuple[StepName, ...] = (
    StepName.STOP_PROVISIONING,
    StepName.DEREGISTER_STORAGE_SERVICE,
    StepName.DEREGISTER_REALTIME_SERVICE,
    StepName.DEREGISTER_AUTH_SERVICE,
    StepName.DELETE_API_KEYS,
    StepName.DROP_GRAPH_DATABASE,
    StepName.DROP_TENANT_DATABASE,
)
USER_TEARDOWN_STEP_NAMES: tuple[StepName, ...] = (StepName.STOP_PROVISIONING, StepName.DROP_GRAPH_DATABASE)
TEARDOWN_STEPS_BY_KIND: dict[str, tuple[StepName, ...]] = {
    ProjectKind.PROJECT: PROJECT_TEARDOWN_STEP_NAMES,
    ProjectKind.USER: USER_TEARDOWN_STEP_NAMES,
}


def step_order(kind: str) -> tuple[StepName, ...]:
    """The order a tenant's step rows are shown in: its kind's steps, then its teardown (a
    project's for a kind not listed); rows of steps not listed come last."""
    return (*STEPS_BY_KIND.get(kind, PROJECT_STEP_NAMES),
            *TEARDOWN_STEPS_BY_KIND.get(kind, PROJECT_TEARDOWN_STEP_NAMES))


# Project-status writes are fenced by a sequence number (tenantflow.store): each run kind counts
# from its own base, so a later deprovisioning's writes always win over a provisioning run's.
STATUS_SEQ_BASE: dict[str, int] = {RunKind.PROVISION: 0, RunKind.DEPROVISION: 1 << 20}
RUN_KIND_OF_STEP: dict[str, RunKind] = {
    **{name: RunKind.PROVISION for name in PROJECT_STEP_NAMES},
    **{name: RunKind.DEPROVISION for name in PROJECT_TEARDOWN_STEP_NAMES},
}


class EventType(StrEnum):
    """The completion events POSTed to ``event_webhook_urls`` (Standard Webhooks ``type``): a run
    has reached a status it cannot leave without a person."""

    TENANT_ONLINE = "tenant.online"
    TENANT_FAILED = "tenant.failed"  # a step failed for good; the run waits for a retry
    TENANT_DELETED = "tenant.deleted"


EVENT_TYPE_OF_STATUS: dict[str, EventType] = {
    ProjectStatus.ONLINE: EventType.TENANT_ONLINE,
    ProjectStatus.FAILED: EventType.TENANT_FAILED,
    ProjectStatus.DELETED: EventType.TENANT_DELETED,
}
