"""The one HTTP mechanism the platform service clients (auth, realtime, storage) share.

Every client goes through ``service_client``: an ``httpx.AsyncClient`` with the configured timeout and
the service's admin credential, whose ``request`` sends through the project's one HTTP error boundary,
``tenantflow.http_errors`` (its table: transport errors, timeouts, 408/425/429 and 5xx are retryable
``ServiceUnavailable``; 401/403 are ``ConfigurationError``, our admin key is wrong; other 4xx are
``ServiceRejected``). This module adds only what is particular to these services: how they explain an
error (``service_message``) and which secrets to scrub from it.

Secrets: admin keys travel only in headers, tenant secrets only in request bodies; neither is ever put
in a message or in ``details``. Each client knows the secrets it sends (the tenant's and its admin key)
and the boundary scrubs them (``redact``) from a service's error message, should the service echo one.

Idempotency: writes carry ``Idempotency-Key: <uuid5(project id, step)>``, stable across every retry of
the same step for the same tenant, so a service that honours the header collapses duplicates; the
clients never rely on it (they check existence or use upsert verbs).
"""

from __future__ import annotations

import hashlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from tenantflow.catalog import StepName
from tenantflow.errors import TenantflowError
from tenantflow.http_errors import REDACTED, HttpService, Said, json_body
from tenantflow.names import validate_project_name
from tenantflow.settings import Settings
from tenantflow.tls import shared_ssl_context

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Fixed namespace: the same (project, step) must give the same key in every worker, forever.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-5e8f-9a0b-1c2d3e4f5a6b")


# ------------------------------------------------------------------------------------- credentials
def bearer_auth(key: SecretStr) -> dict[str, str]:
    """``Authorization: Bearer <key>`` (auth and realtime admin APIs)."""
    return {"Authorization": f"Bearer {key.get_secret_value()}"}


def apikey_auth(key: SecretStr) -> dict[str, str]:
    """``apikey: <key>`` (storage admin API, and tenant-facing endpoints)."""
    return {"apikey": key.get_secret_value()}


# ------------------------------------------------------------------------------------- idempotency
def idempotency_key(project_id: uuid.UUID | str, step: str) -> str:
    """A key that is the same for every attempt of ``step`` for one tenant, and differs otherwise."""
    return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{project_id}:{step}"))


def idempotency_headers(project_id: uuid.UUID | str, step: str) -> dict[str, str]:
    """The ``Idempotency-Key`` header for a write made by ``step`` for one tenant."""
    return {IDEMPOTENCY_HEADER: idempotency_key(project_id, step)}


# ------------------------------------------------------------------------------------------- paths
def tenant_path(template: str, tenant: str) -> str:
    """``template`` with ``{tenant}`` replaced by a validated, path-quoted tenant name.

    Args:
        template: A path such as ``/tenants/{tenant}``.
        tenant: The tenant name; ``InvalidName`` if it is not a valid project name.
    """
    return template.format(tenant=quote(validate_project_name(tenant), safe=""))


# ------------------------------------------------------------------------------------------ errors
def service_message(response: httpx.Response) -> Said:
    """The service's own explanation of an error response (scrubbed and cut by the boundary).

    Understands the error shapes of the services we talk to: ``{"message": ...}`` (storage, ours),
    ``{"error": ...}`` / ``{"msg": ...}`` / ``{"error_description": ...}`` (GoTrue-like) and
    ``{"errors": {field: [problems]}}`` (realtime's changeset errors).
    """
    body = json_body(response)
    if isinstance(body, str):
        return Said(body.strip())
    if not isinstance(body, Mapping):
        return Said("")
    for key in ("message", "msg", "error_description", "error", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return Said(value)
    errors = body.get("errors")
    if isinstance(errors, Mapping):
        return Said("; ".join(
            f"{name} {', '.join(map(str, p)) if isinstance(p, list) else p}" for name, p in errors.items()
        ))
    return Said("")


# ------------------------------------------------------------------------------------------ client
class ServiceClient:
    """One platform service's admin API: requests whose failures are already our errors."""

    def __init__(self, service: str, http: httpx.AsyncClient, *, secrets: Iterable[str] = ()) -> None:
        self.service = service
        self._http = http
        self._boundary = HttpService(service, read=service_message, secrets=tuple(s for s in secrets if s))

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        accept: Iterable[int] = (),
    ) -> httpx.Response:
        """Send a request; return the response if it is 2xx or its status is in ``accept``.

        Args:
            method: HTTP method.
            path: Path relative to the service's base URL (tenant parts built with ``tenant_path``).
            json: JSON body (may hold tenant secrets: it is never logged or put in errors).
            headers: Extra headers (e.g. ``idempotency_headers``).
            accept: Non-2xx statuses the caller handles itself (e.g. 404 on an existence check).

        Raises:
            ServiceRejected: the service answered a 4xx that retrying cannot fix.
            ConfigurationError: the service refused our admin key (401/403).
            ServiceUnavailable: timeout, connection error, 5xx, 408/425/429.
        """
        return await self._boundary.request(self._http, method, path, json=json, headers=headers,
                                            accept=frozenset(accept))

    def error(self, method: str, path: str, outcome: httpx.Response | httpx.HTTPError) -> TenantflowError:
        """Our error for a response the caller accepted and then judged a failure after all."""
        return self._boundary.error(outcome, method=method, path=path)


@asynccontextmanager
async def service_client(
    settings: Settings,
    service: str,
    base_url: str,
    auth: Mapping[str, str],
    *,
    secrets: Iterable[str] = (),
) -> AsyncIterator[ServiceClient]:
    """An HTTP client for one service's admin API, closed on exit.

    Args:
        settings: Supplies ``service_timeout_seconds`` (connect, read, write and pool timeouts).
        service: The service's name, used in errors.
        base_url: The configured base URL (``*_service_url``); paths are appended to it.
        auth: The admin credential headers (``bearer_auth`` / ``apikey_auth``).
        secrets: Values scrubbed from every error message (the tenant's secrets this client sends).
    """
    async with httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers={"Accept": "application/json", **auth},
        timeout=httpx.Timeout(settings.service_timeout_seconds),
        follow_redirects=False,
        verify=shared_ssl_context(),
    ) as http:
        yield ServiceClient(service, http, secrets=secrets)


# ---------------------------------------------------------------------------- what is registered
@dataclass(frozen=True)
class DatabaseTarget:
    """The tenant database as the services must reach it (parsed from the tenant's DSN)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    url: str = field(repr=False)

    @classmethod
    def from_dsn(cls, dsn: str) -> DatabaseTarget:
        """Parse a libpq URL / conninfo string (the password is kept, never shown)."""
        parts = conninfo_to_dict(dsn)
        return cls(
            host=str(parts.get("host") or "localhost"),
            port=int(parts.get("port") or 5432),
            dbname=str(parts.get("dbname") or ""),
            user=str(parts.get("user") or ""),
            password=str(parts.get("password") or ""),
            url=dsn,
        )

    def public(self) -> dict[str, Any]:
        """The parts that are not secret."""
        return {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user}


@dataclass(frozen=True)
class TenantRegistration:
    """Everything a service registration needs, read once from the mirror and the credential store.

    Lives only inside one activity attempt; its secrets are excluded from ``repr``.
    """

    project_id: uuid.UUID
    name: str
    database: DatabaseTarget
    jwt_secret: str = field(repr=False)
    anon_key: str = field(repr=False)
    service_role_key: str = field(repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for scrubbing service messages."""
        return (self.jwt_secret, self.anon_key, self.service_role_key, self.database.password,
                self.database.url)


# ----------------------------------------------------------------------------------- verification
@dataclass
class Verification:
    """What verifying one service's registration compared, and what differed (no secret values)."""

    service: str
    checked: list[str] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    def compare(self, name: str, expected: Any, actual: Any, *, secret: bool = False) -> None:
        """Record that ``name`` was checked, and a mismatch if ``actual != expected``.

        Secret fields are compared by value but reported only as ``[redacted]``.
        """
        self.checked.append(name)
        if expected == actual:
            return
        if secret:
            expected, actual = REDACTED, None if actual in (None, "") else f"{REDACTED} (differs)"
        self.mismatches.append(
            {"service": self.service, "field": name, "expected": expected, "actual": actual}
        )

    def compare_database(self, prefix: str, expected: DatabaseTarget, actual: Mapping[str, Any]) -> None:
        """Compare host/port/dbname/user (and password, as a secret, when ``actual`` has one)."""
        for key, value in expected.public().items():
            got = actual.get(key)
            self.compare(f"{prefix}.{key}", value, int(got) if key == "port" and got else got)
        if "password" in actual:
            self.compare(f"{prefix}.password", expected.password, actual["password"], secret=True)

    def missing(self, what: str = "registration") -> None:
        """The service does not know the tenant at all."""
        self.checked.append(what)
        self.mismatches.append(
            {"service": self.service, "field": what, "expected": "present", "actual": "absent"}
        )

    def result(self) -> dict[str, Any]:
        return {"checked": self.checked, "ok": not self.mismatches}


def sha256_hex(value: str) -> str:
    """Hex SHA-256 of a secret, for services that return a digest instead of the secret."""
    return hashlib.sha256(value.encode()).hexdigest()


# -------------------------------------------------------------------------------- service clients
class PlatformService(ABC):
    """One platform service: its configuration, admin credential, and its admin API contract.

    Settings follow one convention: ``<name>_service_url`` (empty: the service is not used) and
    ``<name>_service_key``. Subclasses (``AuthService``, ``RealtimeService``, ``StorageService``) say
    how to register a tenant and which fields and health signals verification compares; this base
    reads their registration back and runs the verification.
    """

    name: ClassVar[str]
    # The provisioning step that registers tenants with this service.
    step: ClassVar[StepName]
    # The deprovisioning step that deregisters them.
    dereg_step: ClassVar[StepName]
    # Path of one tenant's registration, with a ``{tenant}`` placeholder.
    tenant_template: ClassVar[str]
    # How the admin key is sent: ``bearer_auth`` or ``apikey_auth``.
    admin_scheme: ClassVar[Callable[[SecretStr], dict[str, str]]]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url: str = getattr(settings, f"{self.name}_service_url")
        self.admin_key: SecretStr = getattr(settings, f"{self.name}_service_key")

    def skip_reason(self) -> str | None:
        """Why this service is not used (its URL is not configured), or None."""
        return None if self.base_url else f"{self.name}_service_url is not set"

    def connect(self, tenant: TenantRegistration) -> AbstractAsyncContextManager[ServiceClient]:
        """An HTTP client for this service's admin API; errors are scrubbed of ``tenant``'s secrets
        and of the admin key, should the service echo them."""
        return self.admin_client(secrets=tenant.secrets)

    def admin_client(self, *, secrets: Iterable[str] = ()) -> AbstractAsyncContextManager[ServiceClient]:
        """An HTTP client for this service's admin API that needs no tenant secret (deregistration);
        errors are scrubbed of the admin key and of ``secrets``."""
        admin_auth = type(self).admin_scheme(self.admin_key)  # via the class: a plain function
        return service_client(self.settings, self.name, self.base_url, admin_auth,
                              secrets=(*secrets, self.admin_key.get_secret_value()))

    def path(self, tenant: TenantRegistration | str, suffix: str = "") -> str:
        """The path of a tenant's registration (plus ``suffix``), its name validated and quoted.

        Args:
            tenant: The registration, or just the tenant's name.
            suffix: Appended to the path (e.g. ``/health``).
        """
        name = tenant if isinstance(tenant, str) else tenant.name
        return tenant_path(self.tenant_template, name) + suffix

    async def fetch(self, http: ServiceClient, tenant: TenantRegistration) -> Any | None:
        """The service's view of ``tenant`` (decoded JSON), or None if it does not know it."""
        found = await http.request("GET", self.path(tenant), accept=(404,))
        return None if found.status_code == 404 else found.json()

    async def deregister(self, http: ServiceClient, tenant_name: str) -> bool:
        """Delete the tenant's registration; True if there was one, False if it was gone already.

        Needs only the tenant's name and the admin key, never the tenant's secrets (they may be
        deleted or never have existed). Read first, because upstream Realtime and Storage answer
        their DELETE with 204 whether or not the tenant existed; a DELETE answered 404 counts as
        done too (the tenant went between the two requests, or the service says so itself). The
        DELETE is sent either way: what the service holds decides, not what the read saw.
        """
        path = self.path(tenant_name)
        existed = (await http.request("GET", path, accept=(404,))).status_code != 404
        await http.request("DELETE", path, accept=(404,))
        return existed

    async def verify(self, http: ServiceClient, tenant: TenantRegistration) -> Verification:
        """Read the registration back and compare it with what ``register`` sends."""
        check = Verification(self.name)
        view = await self.fetch(http, tenant)
        if view is None:
            check.missing()
            return check
        self.compare(check, view, tenant)
        await self.check_health(check, http, tenant)
        return check

    @abstractmethod
    async def register(self, http: ServiceClient, tenant: TenantRegistration) -> bool:
        """Create or converge the tenant's registration; True if this call created it."""

    @abstractmethod
    def compare(self, check: Verification, view: Any, tenant: TenantRegistration) -> None:
        """Compare the fields of the service's ``view`` of the tenant with what was registered."""

    @abstractmethod
    async def check_health(
        self, check: Verification, http: ServiceClient, tenant: TenantRegistration
    ) -> None:
        """Ask the service's health endpoint about the tenant; record the answer in ``check``."""
