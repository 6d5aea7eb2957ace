"""What the console's pages show, computed from mirror rows: counts, list rows, the step timeline
grouped by run, which buttons a tenant gets, durations and ages as people read them, and links to
the Temporal Web UI. Plain functions and dataclasses, so the templates only lay things out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from api.provisioning import waiting_run
from api.schemas import StepOut
from tenantflow.catalog import SETTLED_STATUSES, AttemptOutcome, ProjectStatus, RunKind, StepStatus
from tenantflow.models import Project, ProvisioningStep, ProvisioningStepAttempt, utcnow
from tenantflow.settings import Settings
from tenantflow.store import StepSummary, deprovision_workflow_id

# A run is under way: the status changes without anybody acting.
IN_FLIGHT: tuple[ProjectStatus, ...] = (
    ProjectStatus.PENDING, ProjectStatus.PROVISIONING, ProjectStatus.DEPROVISIONING,
)
RUN_TITLES = {RunKind.PROVISION: "Provisioning", RunKind.DEPROVISION: "Deprovisioning"}


# ------------------------------------------------------------------------------------- formats
def duration(seconds: float | None) -> str:
    """``850 ms``, ``4.2 s``, ``3 min 05 s``, ``2 h 07 min``, ``3 d 4 h``; ``—`` for none."""
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from ``start`` to ``end`` (None if either is missing)."""
    return (end - start).total_seconds() if start and end else None


def span(start: datetime | None, end: datetime | None) -> str:
    """``duration`` from ``start`` to ``end``."""
    return duration(between(start, end))


def timestamp(moment: datetime | None) -> str:
    """UTC, to the second: ``2026-11-23 21:00:07Z``."""
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "—"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def compact_json(value: Any) -> str:
    """One line, to summarise a result before it is opened."""
    return json.dumps(value, sort_keys=True, default=str)


def temporal_run_url(settings: Settings, workflow_id: str) -> str:
    """The run's page in the Temporal Web UI (namespace and id quoted as path segments)."""
    namespace = quote(settings.temporal_namespace, safe="")
    return f"{settings.temporal_ui_url}/namespaces/{namespace}/workflows/{quote(workflow_id, safe='')}"


# ----------------------------------------------------------------------------------- the list
@dataclass(frozen=True)
class Counts:
    """Tenants per status, as the list's top line groups them."""

    by_status: Mapping[str, int]

    @property
    def failed(self) -> int:
        return self.by_status.get(ProjectStatus.FAILED, 0)

    @property
    def in_flight(self) -> int:
        return sum(self.by_status.get(s, 0) for s in IN_FLIGHT)

    def of(self, status: str) -> int:
        return self.by_status.get(status, 0)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class TenantRow:
    """One line of the tenants table."""

    project: Project
    step: str | None  # the step under way or waiting for a person (for a tenant in flight or failed)
    step_status: str | None
    step_error: str | None
    age: str
    time_to_online: str

    @classmethod
    def of(cls, project: Project, summary: StepSummary | None, *, now: datetime) -> TenantRow:
        shown = summary is not None and project.status not in (ProjectStatus.ONLINE, ProjectStatus.DELETED)
        online_at = summary.online_at if summary else None
        return cls(
            project=project,
            step=summary.current_step if shown and summary else None,
            step_status=summary.current_status if shown and summary else None,
            step_error=summary.current_error if shown and summary else None,
            age=duration(between(project.created_at, now)),
            time_to_online=duration(between(project.created_at, online_at)),
        )


def tenant_rows(
    projects: Iterable[Project], summaries: Mapping[uuid.UUID, StepSummary], *, now: datetime | None = None
) -> list[TenantRow]:
    moment = now or utcnow()
    return [TenantRow.of(p, summaries.get(p.id), now=moment) for p in projects]


# ------------------------------------------------------------------------------- a tenant's page
@dataclass(frozen=True)
class StepView:
    """A step of the timeline: the API's view of the row plus what the page computes."""

    step: StepOut
    duration: str
    state: str  # the badge: the step's status, or ``retrying`` (pending after a failed attempt)

    @property
    def has_history(self) -> bool:
        """Whether the attempts tell more than the row: a retry, or an attempt that did not succeed."""
        attempts = self.step.attempts or []
        quiet = (AttemptOutcome.SUCCESS, AttemptOutcome.SKIPPED, None)  # None: still running
        return len(attempts) > 1 or any(a.outcome not in quiet for a in attempts)

    @property
    def skip_reason(self) -> str | None:
        reason = (self.step.result or {}).get("skip_reason")
        return str(reason) if reason else None


@dataclass(frozen=True)
class RunView:
    """One run's steps (provisioning, or the teardown), with its link in the Temporal Web UI."""

    kind: RunKind
    title: str
    workflow_id: str
    url: str
    steps: list[StepView]


def step_view(step: StepOut, *, now: datetime, run_active: bool) -> StepView:
    """``retrying``: pending with an error while its run goes on (Temporal tries again); in a run
    that is over, such a step is just pending (e.g. cancelled by a deletion, its error says so)."""
    end = step.completed_at if step.status != StepStatus.RUNNING else now
    retrying = run_active and step.status == StepStatus.PENDING and step.error_message
    state = "retrying" if retrying else str(step.status)
    return StepView(step=step, duration=duration(between(step.started_at, end)), state=state)


def active_run(project: Project) -> RunKind | None:
    """The run under way (None: nothing runs, or a run waits for a person)."""
    if project.status in (ProjectStatus.PENDING, ProjectStatus.PROVISIONING):
        return RunKind.PROVISION
    return RunKind.DEPROVISION if project.status == ProjectStatus.DEPROVISIONING else None


def run_workflow_id(project: Project, kind: RunKind) -> str:
    return project.workflow_id if kind == RunKind.PROVISION else deprovision_workflow_id(
        project.id, project.kind, project.name
    )


def timeline(
    settings: Settings, project: Project, rows: Iterable[ProvisioningStep],
    attempts: Iterable[ProvisioningStepAttempt], *, now: datetime | None = None,
) -> list[RunView]:
    """The tenant's runs in order (provisioning, then the teardown once it has step rows), each
    with its steps in catalog order and every attempt of each."""
    moment = now or utcnow()
    steps = StepOut.from_rows(project.kind, rows, attempts)
    runs = []
    for kind in RunKind:
        active = active_run(project) == kind
        mine = [step_view(s, now=moment, run_active=active) for s in steps if s.run_kind == kind]
        if mine:
            wid = run_workflow_id(project, kind)
            runs.append(RunView(kind, RUN_TITLES[kind], wid, temporal_run_url(settings, wid), mine))
    return runs


@dataclass(frozen=True)
class Actions:
    """The buttons a tenant gets, from its status and its steps."""

    retry: RunKind | None  # the run waiting on a failed step
    cancel: bool
    delete: bool

    @classmethod
    def of(cls, project: Project, rows: Iterable[ProvisioningStep]) -> Actions:
        waiting: RunKind | None = None
        if project.status == ProjectStatus.FAILED:
            waiting = waiting_run(rows)
        tearing_down = project.status == ProjectStatus.DEPROVISIONING or waiting == RunKind.DEPROVISION
        return cls(
            retry=waiting,
            cancel=project.status in (ProjectStatus.PENDING, ProjectStatus.PROVISIONING)
            or waiting == RunKind.PROVISION,
            delete=project.status != ProjectStatus.DELETED and not tearing_down,
        )


@dataclass(frozen=True)
class Header:
    """The top of a tenant's page: who it is, where its runs are, what can be done."""

    project: Project
    time_to_online: str
    runs: list[tuple[str, str, str]]  # (title, workflow id, Temporal Web UI link)
    actions: Actions
    live: bool

    @classmethod
    def of(
        cls, settings: Settings, project: Project, rows: list[ProvisioningStep], summary: StepSummary | None
    ) -> Header:
        kinds = [RunKind.PROVISION]
        if project.status in (ProjectStatus.DEPROVISIONING, ProjectStatus.DELETED) or any(
            r.run_kind == RunKind.DEPROVISION for r in rows
        ):
            kinds.append(RunKind.DEPROVISION)
        runs = [(RUN_TITLES[k], wid, temporal_run_url(settings, wid))
                for k in kinds for wid in [run_workflow_id(project, k)]]
        return cls(
            project=project,
            time_to_online=duration(between(project.created_at, summary.online_at if summary else None)),
            runs=runs,
            actions=Actions.of(project, rows),
            # The event stream ends at a settled status: the page listens only before.
            live=project.status not in SETTLED_STATUSES,
        )
