"""Client of the Supabase Storage multi-tenant admin API.

Contract (supabase/storage ``src/http/routes/admin/tenants.ts``; paths relative to
``storage_service_url``, every request with ``apikey: <storage_service_key>``, a wrong one → 401)::

    GET /tenants/{tenant}         → 200 {"anonKey", "serviceKey", "jwtSecret", "databaseUrl",
                                         "fileSizeLimit", "features": {...}, ...} | 404
    PUT /tenants/{tenant}         {"anonKey", "serviceKey", "jwtSecret", "databaseUrl" (required),
                                   "fileSizeLimit", "features": {"imageTransformation": {"enabled"}}}
                                  → 204; an upsert (insert ... on conflict merge)
    GET /tenants/{tenant}/health  → 200 {"healthy": bool} (the service reaches the tenant database)
    DELETE /tenants/{tenant}      → 204 (upstream whether or not it existed; the stand-in answers 404
                                  for an unknown tenant, also taken as done)

The admin API returns the tenant's secrets in clear; verification compares them by value and reports
only which field differs, never a value.
"""

from __future__ import annotations

from typing import Any

import psycopg

from activities.platform_http import (
    DatabaseTarget,
    PlatformService,
    ServiceClient,
    TenantRegistration,
    Verification,
    apikey_auth,
    idempotency_headers,
)
from tenantflow.catalog import StepName

FILE_SIZE_LIMIT = 50 * 1024 * 1024
IMAGE_TRANSFORMATION = False


class StorageService(PlatformService):
    """The storage service's admin API (contract in the module docstring)."""

    name = "storage"
    step = StepName.REGISTER_STORAGE_SERVICE
    dereg_step = StepName.DEREGISTER_STORAGE_SERVICE
    tenant_template = "/tenants/{tenant}"
    admin_scheme = apikey_auth

    def body(self, tenant: TenantRegistration) -> dict[str, Any]:
        """The registration sent to the service (holds secrets: never log it)."""
        return {
            "anonKey": tenant.anon_key,
            "serviceKey": tenant.service_role_key,
            "jwtSecret": tenant.jwt_secret,
            "databaseUrl": tenant.database.url,
            "fileSizeLimit": FILE_SIZE_LIMIT,
            "features": {"imageTransformation": {"enabled": IMAGE_TRANSFORMATION}},
        }

    async def register(self, http: ServiceClient, tenant: TenantRegistration) -> bool:
        # PUT answers 204 either way; the read before it only tells "created" from "converged".
        existed = await self.fetch(http, tenant) is not None
        await http.request(
            "PUT", self.path(tenant), json=self.body(tenant),
            headers=idempotency_headers(tenant.project_id, self.step),
        )
        return not existed

    def compare(self, check: Verification, view: Any, tenant: TenantRegistration) -> None:
        check.compare("anonKey", tenant.anon_key, view.get("anonKey"), secret=True)
        check.compare("serviceKey", tenant.service_role_key, view.get("serviceKey"), secret=True)
        check.compare("jwtSecret", tenant.jwt_secret, view.get("jwtSecret"), secret=True)
        try:
            actual = DatabaseTarget.from_dsn(view.get("databaseUrl") or "")
        except psycopg.Error:  # unparseable: report it without echoing it (it may hold a password)
            check.compare("databaseUrl", "a postgresql:// URL", "unparseable")
        else:
            check.compare_database("databaseUrl", tenant.database,
                                   {**actual.public(), "password": actual.password})
        check.compare("fileSizeLimit", FILE_SIZE_LIMIT, view.get("fileSizeLimit"))

    async def check_health(
        self, check: Verification, http: ServiceClient, tenant: TenantRegistration
    ) -> None:
        health = await http.request("GET", self.path(tenant, "/health"), accept=(404,))
        check.compare("health.healthy", True, health.is_success and health.json().get("healthy"))
