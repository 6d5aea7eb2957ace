"""Neo4j Aura: one AuraDB instance per tenant, through the Aura API v1.

``AuraClient`` speaks HTTP (OAuth2 client credentials, retries, error mapping); ``AuraGraphBackend``
implements :class:`activities.graph.backend.GraphBackendImpl` on top of it.

Errors. :func:`aura_error` is the one place HTTP failures become ours::

    transport error, timeout, 5xx, 429 (retries spent)  → AuraUnavailable(ServiceUnavailable)  retryable
    4xx (bad region, quota, unknown tenant, auth)        → AuraRejected(ServiceRejected)        permanent

``AuraRejected`` carries Aura's own message (``{"errors": [{"message", "reason", "field"}]}``) and
the status code in its details. Neither ever holds the client secret, a token or a password.

Never two instances. ``POST /v1/instances`` is not idempotent and Aura bills per instance, so
``create``:

1. names the instance deterministically from the project (:func:`instance_name`);
2. if the project row records an instance, GETs it and adopts it (its password was stored before
   the row was written, see 4);
3. otherwise lists the tenant's instances and looks for that name. A live instance found this way
   was created by an attempt that crashed before recording it, so its password — shown by Aura
   only once — is lost. Nobody can have connected to it (the password never left that attempt), so
   it holds no data: it is deleted, and the step waits until it is gone before creating anew (the
   free tier allows one instance; a destroying instance still counts);
4. POSTs, then stores the password encrypted, then writes the instance onto the project row, in
   that order and in the same activity call. "Row names an instance" therefore implies "its
   password is stored"; a crash between the two leaves the row empty, and 3 cleans up.

The client never retries the POST after a 5xx or a lost response (Aura may have acted); the next
attempt of the step finds the instance by name (3). A 429 or a refused connection is retried:
Aura did nothing. One attempt of a step runs at a time (Temporal), which is what makes
list-then-create safe.

The backend records the instance on the project row; ``projects.graph_status`` is kept by the
steps in ``activities.graph.steps``; ``activities.graph.backend.poll_until`` runs the readiness poll.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from temporalio import activity

from activities.deps import Deps
from activities.graph.backend import GRAPH_PASSWORD, Poll, poll_until
from tenantflow.errors import (
    ConfigurationError,
    GraphDatabaseFailed,
    ServiceRejected,
    ServiceUnavailable,
    StillWaiting,
    TenantflowError,
    VerificationFailed,
)
from tenantflow.models import Project
from tenantflow.settings import Settings
from tenantflow.tls import shared_ssl_context

log = logging.getLogger(__name__)

SERVICE = "aura"
RUNNING = "running"
GONE_STATUSES = frozenset({"destroying", "destroyed"})
NAME_PREFIX = "tf-"
NAME_MAX = 30  # Aura's limit on instance names
GRAPH_DATABASE = "neo4j"  # every Aura instance serves its data from the default database
GRAPH_MODE = "instance-per-tenant"  # projects.graph_mode: the tenant owns a whole instance


class AuraUnavailable(ServiceUnavailable):
    """Aura could not be reached or answered 5xx/429 after the client's retries (retryable)."""


class AuraRejected(ServiceRejected):
    """Aura answered 4xx: bad region or size, quota, unknown tenant, credentials (permanent)."""


# --------------------------------------------------------------------------- errors
def _aura_messages(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """Aura's error text and its first reason/field, from ``{"errors": [...]}`` (or OAuth's form)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no error body", {}
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        errors = [e for e in body["errors"] if isinstance(e, dict)]
        message = "; ".join(str(e.get("message", "")) for e in errors if e.get("message"))
        first = errors[0] if errors else {}
        extra = {k: first[k] for k in ("reason", "field") if first.get(k) is not None}
        return message or response.reason_phrase, extra
    if isinstance(body, dict) and body.get("error"):  # OAuth2 error response
        return str(body.get("error_description") or body["error"]), {"reason": str(body["error"])}
    return response.reason_phrase or "unexpected error body", {}


def aura_error(failure: httpx.Response | httpx.HTTPError, *, operation: str) -> TenantflowError:
    """Translate a failed Aura call (an error response or an httpx exception) into our error."""
    details: dict[str, Any] = {"service": SERVICE, "operation": operation}
    if isinstance(failure, httpx.HTTPError):
        details["error"] = type(failure).__name__
        kind = "timed out" if isinstance(failure, httpx.TimeoutException) else "failed"
        return AuraUnavailable(f"Aura API {operation} {kind}: {type(failure).__name__}", details=details)
    status = failure.status_code
    message, extra = _aura_messages(failure)
    details.update(status_code=status, **extra)
    retry_after = _retry_after(failure)
    if retry_after is not None:
        details["retry_after_seconds"] = retry_after
    if status == 429 or status >= 500:
        return AuraUnavailable(f"Aura API {operation} answered {status}: {message}", details=details)
    return AuraRejected(f"Aura API rejected {operation} ({status}): {message}", details=details)


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), if the response has one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


# --------------------------------------------------------------------------- client
class AuraClient:
    """The Aura API v1 over HTTP, with a cached OAuth2 token and bounded retries.

    Idempotent requests (GET, DELETE, the token request) are retried on transport errors, timeouts,
    5xx and 429. ``create_instance`` is retried only when Aura certainly did nothing: 429, or a
    connection that never opened. A 401/403 refreshes the token once and repeats the request.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_retries: int = 4,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 10.0,
        max_retry_after_seconds: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client_id = settings.aura_client_id
        self._client_secret = settings.aura_client_secret
        self._http = httpx.AsyncClient(
            base_url=settings.aura_api_url.rstrip("/"),
            timeout=settings.aura_request_timeout_seconds,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "tenantflow"},
            verify=shared_ssl_context(),
        )
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._max_retry_after = max_retry_after_seconds
        self._token: str | None = None
        self._token_expires = 0.0  # monotonic
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ instances
    async def create_instance(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/instances``; the returned ``data`` holds the only copy of the password."""
        response = await self._request("POST", "/v1/instances", "create instance", json=body,
                                       idempotent=False)
        return _data(response, "create instance")

    async def get_instance(self, instance_id: str) -> dict[str, Any] | None:
        """``GET /v1/instances/{id}``; None if Aura does not know the instance (404)."""
        response = await self._request("GET", f"/v1/instances/{instance_id}", "get instance",
                                       not_found_ok=True)
        return None if response.status_code == 404 else _data(response, "get instance")

    async def list_instances(self, tenant_id: str) -> list[dict[str, Any]]:
        """``GET /v1/instances?tenantId=``: the tenant's instances (id, name, ... per item)."""
        response = await self._request("GET", "/v1/instances", "list instances",
                                       params={"tenantId": tenant_id})
        data = _data(response, "list instances")
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    async def delete_instance(self, instance_id: str) -> bool:
        """``DELETE /v1/instances/{id}``; False if it was already gone (404)."""
        response = await self._request("DELETE", f"/v1/instances/{instance_id}", "delete instance",
                                       not_found_ok=True)
        return response.status_code != 404

    # ---------------------------------------------------------------------- token
    async def _access_token(self, *, stale: str | None = None) -> str:
        """The cached token, fetched anew when close to expiry or when ``stale`` was rejected."""
        async with self._token_lock:
            if self._token is not None and self._token == stale:
                self._token = None
            if self._token is None or time.monotonic() >= self._token_expires:
                response = await self._send(
                    "POST", "/oauth/token", "authenticate", idempotent=True,
                    data={"grant_type": "client_credentials"},
                    auth=(self._client_id, self._client_secret.get_secret_value()),
                )
                if response.is_error:
                    raise aura_error(response, operation="authenticate")
                try:
                    body = response.json()
                    token, ttl = str(body["access_token"]), float(body.get("expires_in", 3600))
                except (ValueError, KeyError, TypeError):
                    raise AuraUnavailable(
                        "Aura API authenticate returned an unreadable token response",
                        details={"service": SERVICE, "operation": "authenticate"},
                    ) from None
                # Refresh a little before Aura would, so a request never carries a dying token.
                self._token = token
                self._token_expires = time.monotonic() + ttl - min(60.0, ttl * 0.1)
            return self._token

    # ------------------------------------------------------------------- requests
    async def _request(
        self, method: str, path: str, operation: str, *, idempotent: bool = True,
        not_found_ok: bool = False, **kwargs: Any,
    ) -> httpx.Response:
        """An authenticated call; raises our error unless it succeeded (or 404 when allowed)."""
        token = await self._access_token()
        response = await self._send(method, path, operation, idempotent=idempotent, token=token, **kwargs)
        if response.status_code in (401, 403):
            # Expired (403) or revoked (401) token: fetch a new one and try once more.
            token = await self._access_token(stale=token)
            response = await self._send(method, path, operation, idempotent=idempotent, token=token,
                                        **kwargs)
        if response.is_success or (not_found_ok and response.status_code == 404):
            return response
        raise aura_error(response, operation=operation)

    async def _send(
        self, method: str, path: str, operation: str, *, idempotent: bool, token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One logical request with bounded retries of 429, 5xx and transport errors.

        Returns the last response (maybe an error one); raises ``AuraUnavailable`` for transport
        errors it may not or can no longer retry.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else None
        for attempt in range(self._max_retries + 1):
            last = attempt == self._max_retries
            try:
                response = await self._http.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                # A connection that never opened carried nothing: safe to repeat even a POST.
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if last or not (idempotent or never_sent) or not isinstance(exc, httpx.TransportError):
                    raise aura_error(exc, operation=operation) from None
                await self._pause(attempt, None, operation, type(exc).__name__)
                continue
            status = response.status_code
            retryable = status == 429 or (status >= 500 and idempotent)
            if not retryable or last:
                return response
            retry_after = _retry_after(response)
            if retry_after is not None and retry_after > self._max_retry_after:
                return response  # too long to wait inside an activity: Temporal retries later
            await self._pause(attempt, retry_after, operation, str(status))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pause(self, attempt: int, retry_after: float | None, operation: str, why: str) -> None:
        backoff = min(self._backoff * 2**attempt, self._max_backoff) * random.uniform(0.8, 1.2)
        delay = max(backoff, retry_after or 0.0)
        log.info("Aura API %s: %s, retrying in %.2fs (retry %d of %d)", operation, why, delay,
                 attempt + 1, self._max_retries)
        await asyncio.sleep(delay)


def _data(response: httpx.Response, operation: str) -> Any:
    try:
        return response.json()["data"]
    except (ValueError, KeyError, TypeError):
        raise AuraUnavailable(
            f"Aura API {operation} returned an unreadable body",
            details={"service": SERVICE, "operation": operation, "status_code": response.status_code},
        ) from None


# --------------------------------------------------------------------------- backend
def instance_name(project: Project) -> str:
    """The Aura instance name of a project: ``tf-`` + the first 27 hex digits of its id (30 chars).

    Deterministic, so a retried step finds what an earlier attempt created. Project ids are
    uuid4: those 27 digits hold about 100 random bits (less the version and variant digits), so
    two projects of one Aura tenant never share a name in practice.
    """
    return (NAME_PREFIX + project.id.hex)[:NAME_MAX]


def http_uri(connection_url: str) -> str:
    """``neo4j+s://host[:port]`` → ``https://host`` (where Aura serves the Query API)."""
    host = urlsplit(connection_url).hostname
    if not host:
        raise AuraUnavailable(
            "Aura returned an instance without a usable connection_url",
            details={"service": SERVICE, "operation": "create instance"},
        )
    return f"https://{host}"


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


class AuraGraphBackend:
    """``GraphBackendImpl`` for Neo4j Aura: an AuraDB instance per tenant."""

    def __init__(self, deps: Deps, *, client: AuraClient | None = None) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.client = client or AuraClient(deps.settings)

    async def aclose(self) -> None:
        await self.client.aclose()

    # --------------------------------------------------------------------- create
    async def create(self, project: Project) -> dict[str, Any]:
        """Find or create the project's instance (never two); store its password and row fields."""
        tenant = self.settings.aura_tenant_id
        if not tenant:
            raise ConfigurationError("graph_backend=aura needs TENANTFLOW_AURA_TENANT_ID")
        name = instance_name(project)
        if project.graph_instance_id:
            found = await self.client.get_instance(project.graph_instance_id)
            if found is not None and found.get("status") not in GONE_STATUSES:
                return await self._adopt(project, found)
            log.warning("Aura instance %s of project %s is gone; creating a new one",
                        project.graph_instance_id, project.id)
            await self.deps.store.update_project(project.id, graph_instance_id=None)
        replaced = await self._clear_name(tenant, name)
        return await self._create_new(project, tenant, name, replaced)

    async def _adopt(self, project: Project, found: dict[str, Any]) -> dict[str, Any]:
        if await self.deps.credentials.find(project.id, GRAPH_PASSWORD) is None:
            # The row is written only after the password; without it something else went wrong,
            # and the instance may hold data: an operator decides, we delete nothing.
            raise GraphDatabaseFailed(
                f"Aura instance {found.get('id')} is recorded for this project but its password is "
                "not in the credential store; an operator must delete the instance or restore the "
                "credential before retrying",
                details={"service": SERVICE, "instance_id": found.get("id")},
            )
        return {"backend": "aura", "instance_id": found.get("id"), "instance_name": found.get("name"),
                "status": found.get("status"), "created": False, "replaced_instances": []}

    async def _clear_name(self, tenant: str, name: str) -> list[str]:
        """Delete instances named ``name`` (orphans of a crashed attempt) and wait until they are gone.

        Returns the ids of the instances it deleted.
        """
        deleted: list[str] = []
        deadline = time.monotonic() + self.settings.aura_poll_timeout_seconds
        while True:
            same = [i for i in await self.client.list_instances(tenant) if i.get("name") == name]
            if not same:
                return deleted
            for inst in same:
                if inst["id"] in deleted or await self._status(inst) in GONE_STATUSES:
                    continue
                log.warning(
                    "Aura instance %s (%s) was created by an attempt that crashed before storing "
                    "its password; deleting it so a new one can be created", inst["id"], name,
                )
                try:
                    await self.client.delete_instance(inst["id"])
                except AuraRejected as exc:
                    if exc.details.get("status_code") != 409:
                        raise
                    continue  # not deletable in its current state yet (e.g. still creating)
                deleted.append(inst["id"])
            _heartbeat({"waiting_for_deletion": [i["id"] for i in same]})
            if time.monotonic() >= deadline:
                raise StillWaiting(
                    f"Aura instance(s) {', '.join(i['id'] for i in same)} named {name} are still "
                    f"being destroyed after {self.settings.aura_poll_timeout_seconds:g}s",
                    details={"service": SERVICE, "instance_ids": [i["id"] for i in same]},
                )
            await asyncio.sleep(self.settings.aura_poll_interval_seconds)

    async def _status(self, listed: dict[str, Any]) -> str:
        """Status of a listed instance (the list may omit it: then GET; gone if unknown)."""
        if listed.get("status"):
            return str(listed["status"])
        found = await self.client.get_instance(listed["id"])
        return "destroyed" if found is None else str(found.get("status"))

    async def _create_new(
        self, project: Project, tenant: str, name: str, replaced: list[str]
    ) -> dict[str, Any]:
        s = self.settings
        created = await self.client.create_instance({
            "name": name, "version": s.aura_version, "region": s.aura_region, "memory": s.aura_memory,
            "type": s.aura_type, "tenant_id": tenant, "cloud_provider": s.aura_cloud_provider,
        })
        instance_id = str(created.get("id") or "")
        password = created.pop("password", None)
        if not instance_id or not password or not created.get("connection_url"):
            raise AuraUnavailable(
                "Aura created an instance but its answer lacks id, connection_url or password",
                details={"service": SERVICE, "operation": "create instance", "instance_id": instance_id},
            )
        uri = str(created["connection_url"])
        https = http_uri(uri)
        # Password first, row second: a row naming an instance promises its password is stored.
        await self.deps.credentials.put(project.id, GRAPH_PASSWORD, str(password))
        await self.deps.store.update_project(
            project.id, graph_backend="aura", graph_mode=GRAPH_MODE, graph_database=GRAPH_DATABASE,
            graph_instance_id=instance_id, graph_uri=uri, graph_http_uri=https,
            graph_username=str(created.get("username") or "neo4j"),
        )
        log.info("created Aura instance %s (%s) for project %s", instance_id, name, project.id)
        return {"backend": "aura", "instance_id": instance_id, "instance_name": name,
                "status": created.get("status"), "created": True, "replaced_instances": replaced}

    # ---------------------------------------------------------------- wait_online
    async def wait_online(self, project: Project) -> dict[str, Any]:
        """Poll the instance until ``running`` (``activities.graph.backend.poll_until``: a heartbeat per
        poll, ``GraphDatabaseFailed`` naming the last status after ``aura_poll_timeout_seconds``);
        fails at once when the instance is destroying or gone."""
        instance_id = self._recorded_instance(project)

        async def check() -> Poll:
            found = await self.client.get_instance(instance_id)
            status = "gone" if found is None else str(found.get("status"))
            if found is None or status in GONE_STATUSES:
                raise GraphDatabaseFailed(
                    f"Aura instance {instance_id} is {status}; it will not come online",
                    details={"service": SERVICE, "instance_id": instance_id, "last_status": status},
                )
            return Poll(status == RUNNING, status,
                        {"backend": "aura", "instance_id": instance_id, "status": status})

        return await poll_until(
            check, what=f"Aura instance {instance_id}",
            interval=self.settings.aura_poll_interval_seconds,
            timeout=self.settings.aura_poll_timeout_seconds,
        )

    # --------------------------------------------------------------------- verify
    async def verify(self, project: Project) -> dict[str, Any]:
        """Aura reports the instance running and its password is stored.

        A query with the tenant's credentials (Bolt or the Query API at ``graph_http_uri``) is
        what a real check would add; the emulator serves no database, so it is not done here.
        """
        instance_id = self._recorded_instance(project)
        found = await self.client.get_instance(instance_id)
        status = "gone" if found is None else str(found.get("status"))
        if status != RUNNING:
            raise VerificationFailed(f"Aura instance {instance_id} is {status}, not running",
                                     details={"service": SERVICE, "instance_id": instance_id,
                                              "status": status})
        if await self.deps.credentials.find(project.id, GRAPH_PASSWORD) is None:
            raise VerificationFailed(f"no graph password stored for Aura instance {instance_id}",
                                     details={"service": SERVICE, "instance_id": instance_id})
        return {"backend": "aura", "instance_id": instance_id, "status": status}

    def _recorded_instance(self, project: Project) -> str:
        if not project.graph_instance_id:
            raise GraphDatabaseFailed(
                f"no Aura instance is recorded for project {project.id}; create_graph_database "
                "has not succeeded", details={"service": SERVICE},
            )
        return project.graph_instance_id

