"""What crosses the workflow boundary: one dataclass per input and result.

Only ids, names, statuses and credential references cross it: never rows, drivers or secrets.
Fields have defaults where they may be added later, so running workflows keep decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProvisionInput:
    """Input of ``ProvisionProjectWorkflow`` and ``ProvisionUserWorkflow``."""

    project_id: str
    tenant_id: str
    # Test and operator knobs; None means the catalog's named defaults.
    retry_initial_interval_seconds: float | None = None
    heartbeat_timeout_seconds: float | None = None
    outage_budget_seconds: float | None = None


@dataclass
class ProvisionResult:
    project_id: str
    status: str
    steps: dict[str, str] = field(default_factory=dict)


@dataclass
class StepInput:
    """Input of every step activity: which tenant. The activity looks the rest up."""

    project_id: str


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


@dataclass
class ProjectStatusInput:
    project_id: str
    status: str


@dataclass
class MarkStepInput:
    """The workflow's own write to a step row: reset to pending, or failed after a timeout."""

    project_id: str
    step_name: str
    status: str
    error_message: str | None = None
    error_details: dict[str, Any] | None = None


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
    """What the ``state`` query returns."""

    project_id: str
    tenant_id: str
    status: str
    steps: dict[str, str]
    failed_step: str | None = None
    last_error: str | None = None
    retries_requested: int = 0
