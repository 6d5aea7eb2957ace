"""What crosses the workflow boundary: one dataclass per input and result.

Only ids, names, statuses and credential references cross it: never rows, drivers or secrets.
Fields have defaults where they may be added later, so running workflows keep decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tenantflow.catalog import ProjectStatus


@dataclass
class ProvisionInput:
    """Input of ``ProvisionProjectWorkflow`` and ``ProvisionUserWorkflow``."""

    project_id: str
    tenant_id: str
    # Test and operator knobs; None means the catalog's named defaults.
    retry_initial_interval_seconds: float | None = None
    heartbeat_timeout_seconds: float | None = None
    outage_budget_seconds: float | None = None
    # Where the run's completion events go (settings.event_webhook_urls when it started; empty: none).
    event_webhook_urls: list[str] = field(default_factory=list)


@dataclass
class ProvisionResult:
    project_id: str
    status: str
    steps: dict[str, str] = field(default_factory=dict)


@dataclass
class StepInput:
    """Input of every step activity: which tenant (the activity looks the rest up), and which
    operator retry of the step this is (0 for the first run; part of the mirror's write fence)."""

    project_id: str
    generation: int = 0


@dataclass
class StepResult:
    """What a step reports back: its final status, its output (``details``, mirrored into the row's
    ``result``) and the names of the credentials it stored (never their values)."""

    status: str
    credential_refs: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class BeginInput:
    project_id: str
    steps: list[str]
    seq: int | None = None  # the project-status write's fence (see ProjectStatusInput)
    status: str = ProjectStatus.PROVISIONING  # the tenant's status while the run goes on


@dataclass
class ProjectStatusInput:
    """The workflow's write of the project's status. ``seq`` counts the run's status writes: a
    write with a lower ``seq`` than the row's (a retried, late activity) is ignored."""

    project_id: str
    status: str
    seq: int | None = None


@dataclass
class MarkStepInput:
    """The workflow's own write to a step row: ``failed`` when a generation of attempts failed for
    good (with the workflow's view of the error), or ``pending`` when an operator's retry starts
    ``generation``."""

    project_id: str
    step_name: str
    status: str
    error_message: str | None = None
    error_details: dict[str, Any] | None = None
    generation: int = 0


@dataclass
class RetryRequest:
    """Signal/update payload that resumes a failed run from its failed step."""

    reason: str = ""
    requested_by: str = ""


@dataclass
class RetryResult:
    step_name: str


@dataclass
class ProvisionState:
    """A provisioning run's whole state: what the workflow keeps and the ``state`` query returns."""

    project_id: str = ""
    tenant_id: str = ""
    status: str = ProjectStatus.PENDING
    steps: dict[str, str] = field(default_factory=dict)
    failed_step: str | None = None
    last_error: str | None = None
    retries_requested: int = 0
    # Operator retries per step so far: the generation the step's next attempts belong to.
    generations: dict[str, int] = field(default_factory=dict)
    retry_pending: bool = False
    status_writes: int = 0
    event_webhook_urls: list[str] = field(default_factory=list)


@dataclass
class TenantFilter:
    """Which tenants a bulk operation applies to (every field narrows; None matches all)."""

    failed_step: str | None = None
    kind: str | None = None
    name_prefix: str | None = None


@dataclass
class RetryFailedInput:
    """Input of ``RetryFailedWorkflow``: resume every run waiting on a failed step that matches
    ``filter``, ``batch_size`` at a time with ``pause_seconds`` between batches."""

    filter: TenantFilter
    batch_size: int
    pause_seconds: float
    reason: str = ""
    requested_by: str = ""


@dataclass
class WaitingRun:
    """A run waiting for a person: the tenant, and which of its runs waits (its workflow id)."""

    project_id: str
    tenant_id: str
    workflow_id: str
    failed_step: str


@dataclass
class RetryFailedProgress:
    """What the ``progress`` query of ``RetryFailedWorkflow`` returns."""

    matched: int = 0
    retried: int = 0
    not_waiting: list[str] = field(default_factory=list)  # tenants whose run no longer waited
    batches_done: int = 0
    done: bool = False


@dataclass
class TenantEventData:
    """``data`` of a completion event. ``failed_step`` and ``error`` (the step row's error message,
    never a secret) are set for ``tenant.failed`` only."""

    project_id: str
    name: str
    kind: str
    status: str
    run_kind: str
    workflow_id: str
    failed_step: str | None = None
    error: str | None = None


@dataclass
class TenantEvent:
    """A completion event as the workflow decided it, the same on every delivery attempt: ``id`` is
    the Standard Webhooks ``webhook-id`` (derived from the run and its status write, so stable across
    retries, crashes and replay), ``timestamp`` when the status was written (ISO 8601)."""

    id: str
    type: str
    timestamp: str
    data: TenantEventData


@dataclass
class DeliverEventInput:
    """Input of ``DeliverEventWorkflow``: one event, to each of ``urls``."""

    event: TenantEvent
    urls: list[str]


@dataclass
class DeliveryInput:
    """Input of the ``deliver_event`` activity: one event to one receiver."""

    event: TenantEvent
    url: str


@dataclass
class DeliveryResult:
    """A receiver took the event: its 2xx status, and the attempt that got through."""

    url: str
    status_code: int
    attempt: int


@dataclass
class DeliveryReport:
    """Result of ``DeliverEventWorkflow`` when every receiver took the event."""

    event_id: str
    delivered: list[DeliveryResult] = field(default_factory=list)
