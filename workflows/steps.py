"""The step catalog: every provisioning step, its activity, timeout and retry policy.

Order (DEVELOPERS.md's seed order, changed where data forces it): ``generate_api_keys`` runs
before the service registrations because auth, realtime and storage are registered with the
tenant's JWT secret and its anon / service_role keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.graph import GraphActivities
    from activities.keys import KeyActivities
    from activities.project import ProjectActivities
    from activities.services import ServiceActivities
    from activities.tenant_postgres import TenantPostgresActivities
    from activities.verify import VerifyActivities
    from tenantflow.models import ProjectKind

# Retry policies. Business failures are raised non-retryable by the activities themselves
# (ApplicationError(non_retryable=True)); these only bound retries of outages.
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30), maximum_attempts=5,
)
GRAPH_CREATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60), maximum_attempts=5,
)
# The readiness poll loops inside one heartbeating activity (frequent polling); retries only
# cover a lost worker or an outage of the graph server.
GRAPH_WAIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30), maximum_attempts=3,
)
SERVICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30), maximum_attempts=6,
)
KEYS_RETRY = DATABASE_RETRY
VERIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30), maximum_attempts=4,
)
# Mirror bookkeeping must never be lost: retried until the mirror database answers.
MIRROR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30), maximum_attempts=0,
)
MIRROR_TIMEOUT = timedelta(seconds=30)
# Steps heartbeat automatically (activities.mirror), so a dead worker is noticed this fast.
HEARTBEAT_TIMEOUT = timedelta(seconds=15)


@dataclass(frozen=True)
class StepSpec:
    name: str
    activity: Callable[..., Any]
    start_to_close_timeout: timedelta
    retry_policy: RetryPolicy

    def retry(self, initial_interval_seconds: float | None) -> RetryPolicy:
        if initial_interval_seconds is None:
            return self.retry_policy
        return dataclasses.replace(
            self.retry_policy, initial_interval=timedelta(seconds=initial_interval_seconds)
        )


CREATE_TENANT_DATABASE = StepSpec(
    "create_tenant_database", TenantPostgresActivities.create_tenant_database,
    timedelta(minutes=2), DATABASE_RETRY,
)
CREATE_TENANT_SCHEMA = StepSpec(
    "create_tenant_schema", TenantPostgresActivities.create_tenant_schema,
    timedelta(minutes=5), DATABASE_RETRY,
)
CREATE_GRAPH_DATABASE = StepSpec(
    "create_graph_database", GraphActivities.create_graph_database,
    timedelta(minutes=3), GRAPH_CREATE_RETRY,
)
# Must outlast graph_wait_timeout_seconds / aura_poll_timeout_seconds (the poll gives up itself).
WAIT_GRAPH_DATABASE_ONLINE = StepSpec(
    "wait_graph_database_online", GraphActivities.wait_graph_database_online,
    timedelta(minutes=30), GRAPH_WAIT_RETRY,
)
GENERATE_API_KEYS = StepSpec(
    "generate_api_keys", KeyActivities.generate_api_keys, timedelta(minutes=1), KEYS_RETRY
)
REGISTER_AUTH_SERVICE = StepSpec(
    "register_auth_service", ServiceActivities.register_auth_service,
    timedelta(minutes=2), SERVICE_RETRY,
)
REGISTER_REALTIME_SERVICE = StepSpec(
    "register_realtime_service", ServiceActivities.register_realtime_service,
    timedelta(minutes=2), SERVICE_RETRY,
)
REGISTER_STORAGE_SERVICE = StepSpec(
    "register_storage_service", ServiceActivities.register_storage_service,
    timedelta(minutes=2), SERVICE_RETRY,
)
VERIFY_SERVICES = StepSpec(
    "verify_services", VerifyActivities.verify_services, timedelta(minutes=3), VERIFY_RETRY
)

PROJECT_STEPS: tuple[StepSpec, ...] = (
    CREATE_TENANT_DATABASE,
    CREATE_TENANT_SCHEMA,
    CREATE_GRAPH_DATABASE,
    WAIT_GRAPH_DATABASE_ONLINE,
    GENERATE_API_KEYS,
    REGISTER_AUTH_SERVICE,
    REGISTER_REALTIME_SERVICE,
    REGISTER_STORAGE_SERVICE,
    VERIFY_SERVICES,
)
USER_STEPS: tuple[StepSpec, ...] = (CREATE_GRAPH_DATABASE, WAIT_GRAPH_DATABASE_ONLINE)

PROJECT_STEP_NAMES = [s.name for s in PROJECT_STEPS]
USER_STEP_NAMES = [s.name for s in USER_STEPS]
# The steps a tenant of each kind goes through (rows created up front, shown in this order).
STEP_NAMES_BY_KIND: dict[str, list[str]] = {
    ProjectKind.PROJECT: PROJECT_STEP_NAMES,
    ProjectKind.USER: USER_STEP_NAMES,
}

BEGIN_PROVISIONING = ProjectActivities.begin_provisioning
SET_PROJECT_STATUS = ProjectActivities.set_project_status
MARK_STEP = ProjectActivities.mark_step
