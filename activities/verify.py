"""The last provisioning step: check that everything the earlier steps made is what it should be.

``verify_services`` runs every check, even after one has failed, so a single run reports every
difference at once::

    tenant_database   activities.tenant_postgres.verify_tenant_database (schema version, tenant login)
    graph             activities.graph.verify_graph (only if the tenant has a graph backend)
    registrations     activities.services.verify_registrations (auth, realtime, storage as configured)

A check that finds a difference raises ``VerificationFailed``; the step then fails non-retryably
with every check's diff in ``error_details["failures"]``. Outages (``TransientError``) are not
differences: they propagate at once and Temporal retries the whole step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from activities.deps import Deps
from activities.graph import verify_graph
from activities.mirror import StepActivities, step
from activities.services import verify_registrations
from activities.tenant_postgres import verify_tenant_database
from tenantflow.catalog import StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import VerificationFailed
from tenantflow.models import Project, StepStatus
from tenantflow.settings import GraphBackend

Check = Callable[[Deps, Project], Awaitable[dict[str, Any]]]


def checks_for(project: Project) -> tuple[dict[str, Check], dict[str, str]]:
    """The checks that apply to ``project``, and the reasons the others are skipped."""
    checks: dict[str, Check] = {"tenant_database": verify_tenant_database}
    skipped: dict[str, str] = {}
    if project.graph_backend and project.graph_backend != GraphBackend.NONE:
        checks["graph"] = verify_graph
    else:
        skipped["graph"] = "the tenant has no graph database"
    checks["registrations"] = verify_registrations
    return checks, skipped


class VerifyActivities(StepActivities):
    @step(StepName.VERIFY_SERVICES)
    async def verify_services(self, input: StepInput) -> StepResult:
        """Run every applicable check; fail with all their diffs if any found a difference."""
        project = await self.load_project(input)
        checks, skipped = checks_for(project)
        passed: dict[str, Any] = {}
        failures: dict[str, Any] = {}
        for name, check in checks.items():
            try:
                passed[name] = await check(self.deps, project)
            except VerificationFailed as exc:
                failures[name] = {"message": exc.message, **exc.details}
        if failures:
            raise VerificationFailed(
                f"verification of {project.name} failed: "
                + "; ".join(f"{name}: {f['message']}" for name, f in failures.items()),
                details={"failures": failures, "passed": passed, "skipped": skipped},
            )
        return StepResult(
            status=StepStatus.SUCCESS,
            details={"checked": passed, "skipped": skipped},
        )
