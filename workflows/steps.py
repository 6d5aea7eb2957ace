"""The step catalog: every provisioning step's activity, timeouts and retry policy.

Step names and their order per tenant kind live in ``tenantflow.catalog`` (``StepName``,
``STEPS_BY_KIND``); this module adds what only the workflows need: which activity runs each step
and how Temporal retries it.

Retries are bounded by *time*, not by a count of attempts. An outage of a step's backend (tenant
Postgres, the graph server, a platform service) is ridden out with capped exponential backoff
for the step's ``outage_budget`` (Temporal's schedule-to-close timeout: minutes), so a restart of
a server does not spend five attempts in fifteen seconds and leave the run waiting for a person.
Business failures are raised non-retryable by the activities themselves and fail at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.graph import GraphActivities
    from activities.keys import KeyActivities
    from activities.notify import NotifyActivities
    from activities.project import ProjectActivities
    from activities.services import ServiceActivities
    from activities.tenant_postgres import TenantPostgresActivities
    from activities.verify import VerifyActivities
    from tenantflow.catalog import STEPS_BY_KIND, TEARDOWN_STEPS_BY_KIND, ProjectKind, StepName
    from tenantflow.contracts import ProvisionInput

# Outages: back off 1, 2, 4, ... seconds, never more than 30 s apart, until the step's budget.
OUTAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30), maximum_attempts=0,
)
# Mirror bookkeeping by the workflow itself must never be lost: retried until the mirror answers.
MIRROR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10), maximum_attempts=0,
)
MIRROR_TIMEOUT = timedelta(seconds=30)
# Steps heartbeat automatically (activities.mirror), so a dead worker is noticed this fast.
HEARTBEAT_TIMEOUT = timedelta(seconds=15)
# How long a step rides out an outage of its backend before it waits for a person.
OUTAGE_BUDGET = timedelta(minutes=10)
# Completion webhooks: a receiver may be down for hours, and nobody waits on its answer (each event
# has its own delivery run), so back off 1 s doubling to 5 min between attempts, for a day.
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5), maximum_attempts=0,
)
WEBHOOK_BUDGET = timedelta(hours=24)
# One attempt: the request (activities.notify.REQUEST_TIMEOUT_SECONDS), and any 429 waits it honours.
WEBHOOK_ATTEMPT_TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class StepSpec:
    """One step as the workflow runs it.

    ``start_to_close_timeout`` bounds one attempt; ``outage_budget`` bounds all attempts together
    (the schedule-to-close timeout), so it is never shorter than one attempt.
    """

    name: StepName
    activity: Callable[..., Any]
    start_to_close_timeout: timedelta
    outage_budget: timedelta = OUTAGE_BUDGET
    retry_policy: RetryPolicy = field(default_factory=lambda: OUTAGE_RETRY)

    def activity_options(self, input: ProvisionInput) -> dict[str, Any]:
        """``execute_activity`` options, with the run's overrides (``ProvisionInput``) applied."""
        retry = self.retry_policy
        if input.retry_initial_interval_seconds:
            retry = dataclasses.replace(
                retry, initial_interval=timedelta(seconds=input.retry_initial_interval_seconds)
            )
        budget = (
            timedelta(seconds=input.outage_budget_seconds) if input.outage_budget_seconds
            else self.outage_budget
        )
        heartbeat = (
            timedelta(seconds=input.heartbeat_timeout_seconds) if input.heartbeat_timeout_seconds
            else HEARTBEAT_TIMEOUT
        )
        return dict(
            # A cancelled run (the tenant is being deleted) ends only once its in-flight step
            # has stopped, so nothing is created behind the teardown's back.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            start_to_close_timeout=min(self.start_to_close_timeout, budget),
            schedule_to_close_timeout=budget,
            heartbeat_timeout=heartbeat,
            retry_policy=retry,
        )


STEP_SPECS: dict[StepName, StepSpec] = {
    spec.name: spec
    for spec in (
        StepSpec(StepName.CREATE_TENANT_DATABASE, TenantPostgresActivities.create_tenant_database,
                 timedelta(minutes=2)),
        StepSpec(StepName.CREATE_TENANT_SCHEMA, TenantPostgresActivities.create_tenant_schema,
                 timedelta(minutes=5)),
        StepSpec(StepName.CREATE_GRAPH_DATABASE, GraphActivities.create_graph_database,
                 timedelta(minutes=3)),
        # One attempt must outlast graph_wait_timeout_seconds / aura_poll_timeout_seconds (the
        # poll gives up by itself); a lost worker or a graph-server outage costs another attempt.
        StepSpec(StepName.WAIT_GRAPH_DATABASE_ONLINE, GraphActivities.wait_graph_database_online,
                 timedelta(minutes=30), outage_budget=timedelta(minutes=45)),
        StepSpec(StepName.GENERATE_API_KEYS, KeyActivities.generate_api_keys, timedelta(minutes=1)),
        StepSpec(StepName.REGISTER_AUTH_SERVICE, ServiceActivities.register_auth_service,
                 timedelta(minutes=2)),
        StepSpec(StepName.REGISTER_REALTIME_SERVICE, ServiceActivities.register_realtime_service,
                 timedelta(minutes=2)),
        StepSpec(StepName.REGISTER_STORAGE_SERVICE, ServiceActivities.register_storage_service,
                 timedelta(minutes=2)),
        StepSpec(StepName.VERIFY_SERVICES, VerifyActivities.verify_services, timedelta(minutes=3)),
        # Teardown. Stopping a provision run waits for its in-flight step to notice the cancel.
        StepSpec(StepName.STOP_PROVISIONING, ProjectActivities.stop_provisioning, timedelta(minutes=5)),
        StepSpec(StepName.DEREGISTER_STORAGE_SERVICE, ServiceActivities.deregister_storage_service,
                 timedelta(minutes=2)),
        StepSpec(StepName.DEREGISTER_REALTIME_SERVICE, ServiceActivities.deregister_realtime_service,
                 timedelta(minutes=2)),
        StepSpec(StepName.DEREGISTER_AUTH_SERVICE, ServiceActivities.deregister_auth_service,
                 timedelta(minutes=2)),
        StepSpec(StepName.DELETE_API_KEYS, KeyActivities.delete_api_keys, timedelta(minutes=1)),
        # Aura: DELETE, then poll until the instance is gone.
        StepSpec(StepName.DROP_GRAPH_DATABASE, GraphActivities.drop_graph_database,
                 timedelta(minutes=30), outage_budget=timedelta(minutes=45)),
        StepSpec(StepName.DROP_TENANT_DATABASE, TenantPostgresActivities.drop_tenant_database,
                 timedelta(minutes=5)),
    )
}

PROJECT_STEPS: tuple[StepSpec, ...] = tuple(STEP_SPECS[n] for n in STEPS_BY_KIND[ProjectKind.PROJECT])
USER_STEPS: tuple[StepSpec, ...] = tuple(STEP_SPECS[n] for n in STEPS_BY_KIND[ProjectKind.USER])
PROJECT_TEARDOWN: tuple[StepSpec, ...] = tuple(
    STEP_SPECS[n] for n in TEARDOWN_STEPS_BY_KIND[ProjectKind.PROJECT]
)
USER_TEARDOWN: tuple[StepSpec, ...] = tuple(STEP_SPECS[n] for n in TEARDOWN_STEPS_BY_KIND[ProjectKind.USER])

# The workflows' own bookkeeping (activity type names kept from the first release: replay-safe).
BEGIN_RUN = ProjectActivities.begin_provisioning
FINISH_DEPROVISIONING = ProjectActivities.finish_deprovisioning
SET_PROJECT_STATUS = ProjectActivities.set_project_status
MARK_STEP = ProjectActivities.mark_step
DELIVER_EVENT: Callable[..., Any] = NotifyActivities.deliver_event
