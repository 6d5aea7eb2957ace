"""Client of the auth service's tenant admin API (a GoTrue-style multi-tenant auth server).

GoTrue itself is single-tenant, so there is no upstream admin contract to follow; this is the contract
tenantflow defines, and ``standins.platform`` implements (paths relative to ``auth_service_url``)::

    PUT /admin/tenants/{tenant}         Authorization: Bearer <auth_service_key>
        {"name", "site_url", "jwt_secret", "jwt_exp", "database_url", "uri_allow_list": [...]}
        → 201 created | 200 updated, body = the tenant view. An upsert: repeating it is harmless.
    GET /admin/tenants/{tenant}         Authorization: Bearer <auth_service_key>
        → 200 tenant view | 404
        view = {"tenant_id", "name", "site_url", "jwt_exp", "uri_allow_list",
                "database": {"host", "port", "dbname", "user", "password_sha256"},
                "jwt_secret_sha256", "created_at", "updated_at"}
        Secrets are never returned, only their SHA-256, so registrations can be verified.
    DELETE /admin/tenants/{tenant}      Authorization: Bearer <auth_service_key>
        → 204 deleted | 404 unknown tenant (deregistration counts both as done)
    GET /admin/tenants/{tenant}/health  apikey: <the tenant's anon key>
        → 200 {"healthy": true, "role": ...} if the key verifies with the registered JWT secret
        | 401 it does not | 404 unknown tenant.
    Errors: {"message": "..."}; a wrong admin key → 401.

``{tenant}`` is the validated project name, path-quoted. ``site_url`` comes from
``settings.tenant_site_url_template``.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from activities.platform_http import (
    PlatformService,
    ServiceClient,
    TenantRegistration,
    Verification,
    apikey_auth,
    bearer_auth,
    idempotency_headers,
    sha256_hex,
)
from tenantflow.catalog import StepName

JWT_EXP_SECONDS = 3600


class AuthService(PlatformService):
    """The auth service's admin API (contract in the module docstring)."""

    name = "auth"
    step = StepName.REGISTER_AUTH_SERVICE
    dereg_step = StepName.DEREGISTER_AUTH_SERVICE
    tenant_template = "/admin/tenants/{tenant}"
    admin_scheme = bearer_auth

    def site_url(self, tenant: TenantRegistration) -> str:
        return self.settings.tenant_site_url_template.format(name=tenant.name)

    def body(self, tenant: TenantRegistration) -> dict[str, Any]:
        """The registration sent to the service (holds secrets: never log it)."""
        site_url = self.site_url(tenant)
        return {
            "name": tenant.name,
            "site_url": site_url,
            "uri_allow_list": [site_url],
            "jwt_secret": tenant.jwt_secret,
            "jwt_exp": JWT_EXP_SECONDS,
            "database_url": tenant.database.url,
        }

    async def register(self, http: ServiceClient, tenant: TenantRegistration) -> bool:
        response = await http.request(
            "PUT", self.path(tenant), json=self.body(tenant),
            headers=idempotency_headers(tenant.project_id, self.step),
        )
        return response.status_code == 201

    def compare(self, check: Verification, view: Any, tenant: TenantRegistration) -> None:
        check.compare("tenant_id", tenant.name, view.get("tenant_id"))
        check.compare("name", tenant.name, view.get("name"))
        check.compare("site_url", self.site_url(tenant), view.get("site_url"))
        check.compare("jwt_secret", sha256_hex(tenant.jwt_secret), view.get("jwt_secret_sha256"),
                      secret=True)
        database = view.get("database") or {}
        check.compare_database("database", tenant.database, database)
        check.compare("database.password", sha256_hex(tenant.database.password),
                      database.get("password_sha256"), secret=True)

    async def check_health(
        self, check: Verification, http: ServiceClient, tenant: TenantRegistration
    ) -> None:
        # The tenant's own anon key must be accepted: proves its keys and JWT secret belong together.
        health = await http.request(
            "GET", self.path(tenant, "/health"), headers=apikey_auth(SecretStr(tenant.anon_key)),
            accept=(401, 403, 404),
        )
        check.compare("health.anon_key_accepted", True, health.is_success and health.json().get("healthy"))
