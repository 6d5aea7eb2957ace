"""Registering a tenant with the platform services (auth, realtime, storage) and verifying it.

Each registration step reads the tenant's secrets from the credential store and hands them straight
to one service's admin API (clients: ``activities.auth_service``, ``activities.realtime_service``,
``activities.storage_service``; shared HTTP mechanism: ``activities.platform_http``). A step whose
service URL is not configured is *skipped* with the reason, never faked as a success. Every
registration converges: rerunning a step after a crash leaves exactly one registration per tenant.

Deregistration (deprovisioning) is the reverse, one step per service, in reverse order: storage,
realtime, auth. It needs only the tenant's name and the service's admin key, never the tenant's
secrets (they may be deleted already, or never have been created), and a registration that is gone
already counts as deregistered.

Only ``{"service", "tenant", "created"}`` (``"deleted"`` for deregistration) leaves a step; secrets
never do.
"""

from __future__ import annotations

import logging
from typing import Any

from activities.auth_service import AuthService
from activities.deps import Deps
from activities.keys import ANON_KEY, JWT_SECRET, SERVICE_ROLE_KEY
from activities.mirror import StepActivities, StepSkipped, step
from activities.platform_http import DatabaseTarget, PlatformService, TenantRegistration
from activities.realtime_service import RealtimeService
from activities.storage_service import StorageService
from activities.tenant_postgres import tenant_dsn
from tenantflow.catalog import StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import VerificationFailed
from tenantflow.models import Project, StepStatus

log = logging.getLogger(__name__)

# In step order; verification walks them in this order too.
SERVICES: tuple[type[PlatformService], ...] = (AuthService, RealtimeService, StorageService)


async def load_registration(deps: Deps, project: Project) -> TenantRegistration:
    """What the services are told about a tenant, with its secrets opened from the credential store.

    Raises:
        NotReady: a secret has not been stored yet (an earlier step has not run).
    """
    creds = deps.credentials
    return TenantRegistration(
        project_id=project.id,
        name=project.name,
        database=DatabaseTarget.from_dsn(await tenant_dsn(deps, project)),
        jwt_secret=await creds.get(project.id, JWT_SECRET),
        anon_key=await creds.get(project.id, ANON_KEY),
        service_role_key=await creds.get(project.id, SERVICE_ROLE_KEY),
    )


class ServiceActivities(StepActivities):
    """The three registration steps; each body is one call to ``_register``."""

    @step(StepName.REGISTER_AUTH_SERVICE)
    async def register_auth_service(self, input: StepInput) -> StepResult:
        """Upsert the tenant's auth configuration (site URL, JWT secret, database)."""
        return await self._register(AuthService(self.deps.settings), input)

    @step(StepName.REGISTER_REALTIME_SERVICE)
    async def register_realtime_service(self, input: StepInput) -> StepResult:
        """Create (or converge) the tenant's realtime tenant with its ``postgres_cdc_rls`` extension."""
        return await self._register(RealtimeService(self.deps.settings), input)

    @step(StepName.REGISTER_STORAGE_SERVICE)
    async def register_storage_service(self, input: StepInput) -> StepResult:
        """Upsert the tenant's storage configuration (keys, JWT secret, database URL)."""
        return await self._register(StorageService(self.deps.settings), input)

    @step(StepName.DEREGISTER_AUTH_SERVICE)
    async def deregister_auth_service(self, input: StepInput) -> StepResult:
        """Delete the tenant's auth configuration; its users can no longer sign in."""
        return await self._deregister(AuthService(self.deps.settings), input)

    @step(StepName.DEREGISTER_REALTIME_SERVICE)
    async def deregister_realtime_service(self, input: StepInput) -> StepResult:
        """Delete the tenant's realtime tenant (and with it its replication of the tenant database)."""
        return await self._deregister(RealtimeService(self.deps.settings), input)

    @step(StepName.DEREGISTER_STORAGE_SERVICE)
    async def deregister_storage_service(self, input: StepInput) -> StepResult:
        """Delete the tenant's storage configuration."""
        return await self._deregister(StorageService(self.deps.settings), input)

    async def _register(self, service: PlatformService, input: StepInput) -> StepResult:
        reason = service.skip_reason()
        if reason:
            raise StepSkipped(reason)
        project = await self.load_project(input)
        tenant = await load_registration(self.deps, project)
        async with service.connect(tenant) as http:
            created = await service.register(http, tenant)
        log.info("tenant %s registered with %s (%s)", project.name, service.name,
                 "created" if created else "already there, converged")
        return StepResult(
            status=StepStatus.SUCCESS,
            details={"service": service.name, "tenant": project.name, "created": created},
        )

    async def _deregister(self, service: PlatformService, input: StepInput) -> StepResult:
        reason = service.skip_reason()
        if reason:
            raise StepSkipped(reason)
        project = await self.load_project(input)
        async with service.admin_client() as http:
            deleted = await service.deregister(http, project.name)
        log.info("tenant %s deregistered from %s (%s)", project.name, service.name,
                 "deleted" if deleted else "was gone already")
        return StepResult(
            status=StepStatus.SUCCESS,
            details={"service": service.name, "tenant": project.name, "deleted": deleted},
        )


async def verify_registrations(deps: Deps, project: Project) -> dict[str, Any]:
    """Read every configured service's registration of ``project`` back and compare it.

    Fields are compared with what the registration steps send (secrets by value or digest, reported
    only as ``[redacted]``), then each service's health endpoint is asked about the tenant.

    Returns:
        ``{"services": {name: {"checked": [...], "ok": True}}, "skipped": {name: reason}}``.

    Raises:
        VerificationFailed: some field differs or a service is unhealthy; ``details["mismatches"]``
            lists ``{"service", "field", "expected", "actual"}`` for each.
    """
    checked: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    mismatches: list[dict[str, Any]] = []
    tenant: TenantRegistration | None = None
    for kind in SERVICES:
        service = kind(deps.settings)
        reason = service.skip_reason()
        if reason:
            skipped[service.name] = reason
            continue
        tenant = tenant or await load_registration(deps, project)
        async with service.connect(tenant) as http:
            verification = await service.verify(http, tenant)
        checked[service.name] = verification.result()
        mismatches += verification.mismatches
    summary: dict[str, Any] = {"services": checked, "skipped": skipped}
    if mismatches:
        fields = ", ".join(f"{m['service']}.{m['field']}" for m in mismatches)
        raise VerificationFailed(
            f"service registrations of {project.name} differ: {fields}",
            details={**summary, "mismatches": mismatches},
        )
    return summary
