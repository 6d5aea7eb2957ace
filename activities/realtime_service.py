"""Client of the Supabase Realtime tenant admin API.

Contract (supabase/realtime ``TenantController``; paths relative to ``realtime_service_url``, every
request with ``Authorization: Bearer <realtime_service_key>``, a wrong one → 403)::

    GET  /api/tenants/{external_id}         → 200 {"data": tenant} | 404 {"error": "not found"}
    POST /api/tenants                       {"tenant": {"name", "external_id", "jwt_secret",
                                              "extensions": [{"type": "postgres_cdc_rls",
                                                              "settings": {...}}]}}
                                            → 201 {"data": tenant}; an external_id that exists → an
                                              error (upstream 422 changeset error, 409 elsewhere)
    PUT  /api/tenants/{external_id}         same body → 200 updated | 201 created (upsert)
    GET  /api/tenants/{external_id}/health  → 200 {"data": {"healthy", "db_connected", ...}} | 404
    DELETE /api/tenants/{external_id}       → 204 (upstream answers 204 for an unknown tenant too;
                                              the stand-in answers 404, also taken as done)

    tenant (response) = {"id", "external_id", "name", "inserted_at", "extensions": [{"type",
                         "settings": settings without db_password}], ...}; jwt_secret is not returned.

Registration is check-then-create (``GET``, then ``POST`` if absent). When the ``POST`` conflicts
because an earlier attempt created the tenant before crashing, the conflict is not an error: the
tenant is read back and converged with ``PUT``. An existing tenant is converged the same way, so a
rerun also repairs drifted settings. Upstream Realtime returns the ``db_*`` settings encrypted with
its ``DB_ENC_KEY``, so verification does not compare them: it compares the plain settings and relies
on the tenant health check (``db_connected``), which proves the registered database settings work.
"""

from __future__ import annotations

from typing import Any

from activities.platform_http import (
    PlatformService,
    ServiceClient,
    TenantRegistration,
    Verification,
    bearer_auth,
    idempotency_headers,
)
from tenantflow.catalog import StepName

TENANTS = "/api/tenants"
EXTENSION = "postgres_cdc_rls"
# Statuses a POST answers when the external_id exists (upstream: 422 changeset error).
CONFLICT_STATUSES = (409, 422)
POLL_INTERVAL_MS = 100
POLL_MAX_CHANGES = 100
POLL_MAX_RECORD_BYTES = 1024 * 1024
PUBLICATION = "supabase_realtime"


# Settings upstream Realtime stores encrypted and returns as ciphertext: not comparable.
ENCRYPTED_UPSTREAM = frozenset({"db_name", "db_host", "db_port", "db_user"})


class RealtimeService(PlatformService):
    """The realtime service's admin API (contract in the module docstring)."""

    name = "realtime"
    step = StepName.REGISTER_REALTIME_SERVICE
    dereg_step = StepName.DEREGISTER_REALTIME_SERVICE
    tenant_template = "/api/tenants/{tenant}"
    admin_scheme = bearer_auth

    def public_settings(self, tenant: TenantRegistration) -> dict[str, Any]:
        """The extension settings that are not secret (what verification compares)."""
        db = tenant.database
        return {
            "db_name": db.dbname,
            "db_host": db.host,
            "db_port": str(db.port),  # a string in Realtime's schema
            "db_user": db.user,
            "region": self.settings.realtime_region,
            "publication": PUBLICATION,
            # Replication slots are cluster-wide: one per tenant database.
            "slot_name": f"realtime_{db.dbname}",
        }

    def body(self, tenant: TenantRegistration) -> dict[str, Any]:
        """The registration sent to the service (holds secrets: never log it)."""
        settings = {
            **self.public_settings(tenant),
            "db_password": tenant.database.password,
            "poll_interval_ms": POLL_INTERVAL_MS,
            "poll_max_changes": POLL_MAX_CHANGES,
            "poll_max_record_bytes": POLL_MAX_RECORD_BYTES,
            "ssl_enforced": False,
        }
        return {
            "tenant": {
                "name": tenant.name,
                "external_id": tenant.name,
                "jwt_secret": tenant.jwt_secret,
                "extensions": [{"type": EXTENSION, "settings": settings}],
            }
        }

    async def register(self, http: ServiceClient, tenant: TenantRegistration) -> bool:
        body = self.body(tenant)
        headers = idempotency_headers(tenant.project_id, self.step)
        if await self.fetch(http, tenant) is None:
            created = await http.request(
                "POST", TENANTS, json=body, headers=headers, accept=CONFLICT_STATUSES
            )
            if created.is_success:
                return True
            # A conflict is ours to resolve only if the tenant now exists (an earlier attempt made
            # it); otherwise the 4xx was a real rejection of the body.
            if await self.fetch(http, tenant) is None:
                raise http.error("POST", TENANTS, created)
        await http.request("PUT", self.path(tenant), json=body, headers=headers)
        return False

    def compare(self, check: Verification, view: Any, tenant: TenantRegistration) -> None:
        data = view.get("data") or {}
        check.compare("external_id", tenant.name, data.get("external_id"))
        check.compare("name", tenant.name, data.get("name"))
        extensions = [e for e in data.get("extensions") or [] if e.get("type") == EXTENSION]
        check.compare(f"extensions[{EXTENSION}]", 1, len(extensions))
        actual = (extensions[0].get("settings") or {}) if extensions else {}
        for key, value in self.public_settings(tenant).items():
            if key not in ENCRYPTED_UPSTREAM:
                check.compare(f"settings.{key}", value, actual.get(key))

    async def check_health(
        self, check: Verification, http: ServiceClient, tenant: TenantRegistration
    ) -> None:
        health = await http.request("GET", self.path(tenant, "/health"), accept=(404,))
        state = (health.json().get("data") or {}) if health.is_success else {}
        check.compare("health.healthy", True, state.get("healthy"))
        check.compare("health.db_connected", True, state.get("db_connected"))
