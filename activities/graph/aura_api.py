"""The Aura API v1 client: OAuth2 client credentials with a cached token, and the requests the
Aura backend (``activities.graph.aura``) makes. It speaks to Aura, or to the emulator
(``standins.aura_emulator``) in tests and the dev stack.

Errors go through the project's one HTTP boundary (``tenantflow.http_errors``); this module adds
only how Aura explains an error, ``{"errors": [{"message", "reason", "field"}]}`` (or OAuth2's
``{"error", "error_description"}`` from the token endpoint), keeping the first ``reason`` and
``field`` in the details. The client secret is scrubbed from anything Aura says; tokens and
instance passwords never reach an error.

Retries follow the boundary's one rule: only a 429 with ``Retry-After`` is sent again here;
everything else is raised (retryable or not) for Temporal to retry the step. That matters for
``POST /v1/instances``: after a 5xx or a lost answer Aura may have created the instance, and it is
the step's next attempt that finds it by name instead of a blind resend creating a second one.
One more request is not a retry: a 401/403 (revoked or expired token) fetches a new token once
and repeats the request; a second refusal means the client credentials are wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

import httpx

from tenantflow.errors import ServiceUnavailable
from tenantflow.http_errors import HttpService, Said, json_body
from tenantflow.rate_budget import RateBudget
from tenantflow.settings import Settings
from tenantflow.tls import shared_ssl_context

SERVICE = "aura"
TOKEN_REFUSED = frozenset({401, 403})


def aura_message(response: httpx.Response) -> Said:
    """Aura's error text and its first reason/field, from ``{"errors": [...]}`` (or OAuth's form)."""
    body = json_body(response)
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        errors = [e for e in body["errors"] if isinstance(e, dict)]
        message = "; ".join(str(e["message"]) for e in errors if e.get("message"))
        first = errors[0] if errors else {}
        return Said(message, {k: first[k] for k in ("reason", "field") if first.get(k) is not None})
    if isinstance(body, dict) and body.get("error"):  # OAuth2 error response
        return Said(str(body.get("error_description") or body["error"]), {"reason": str(body["error"])})
    return Said("")


class AuraClient:
    """The Aura API v1 over HTTP, with a cached OAuth2 token.

    Every request (the token's too) first takes a token from ``budget``, the account's request
    limit shared by all workers (``tenantflow.rate_budget``).

    Args:
        settings: ``aura_api_url``, ``aura_client_id``/``aura_client_secret``, the request timeout.
        budget: The account's request budget (None: unlimited, for tests of the client alone).
        transport: An httpx transport to use instead of the network (tests).
    """

    def __init__(
        self, settings: Settings, *, budget: RateBudget | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._budget = budget
        self._client_id = settings.aura_client_id
        self._client_secret = settings.aura_client_secret
        self._http = httpx.AsyncClient(
            base_url=settings.aura_api_url.rstrip("/"),
            timeout=settings.aura_request_timeout_seconds,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "tenantflow"},
            verify=shared_ssl_context(),
        )
        self._aura = HttpService(SERVICE, read=aura_message,
                                 secrets=(self._client_secret.get_secret_value(),))
        self._token: str | None = None
        self._token_expires = 0.0  # monotonic
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ instances
    async def create_instance(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/instances``; the returned ``data`` holds the only copy of the password."""
        response = await self._request("POST", "/v1/instances", "create instance", json=body)
        data = _data(response, "create instance")
        return data if isinstance(data, dict) else {}

    async def get_instance(self, instance_id: str) -> dict[str, Any] | None:
        """``GET /v1/instances/{id}``; None if Aura does not know the instance (404)."""
        response = await self._request("GET", f"/v1/instances/{instance_id}", "get instance",
                                       accept={404})
        if response.status_code == 404:
            return None
        data = _data(response, "get instance")
        return data if isinstance(data, dict) else {}

    async def list_instances(self, tenant_id: str) -> list[dict[str, Any]]:
        """``GET /v1/instances?tenantId=``: the tenant's instances (id, name, ... per item)."""
        response = await self._request("GET", "/v1/instances", "list instances",
                                       params={"tenantId": tenant_id})
        data = _data(response, "list instances")
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    async def delete_instance(self, instance_id: str) -> bool:
        """``DELETE /v1/instances/{id}``; False if it was already gone (404)."""
        response = await self._request("DELETE", f"/v1/instances/{instance_id}", "delete instance",
                                       accept={404})
        return response.status_code != 404

    # ---------------------------------------------------------------------- token
    async def _access_token(self, *, stale: str | None = None) -> str:
        """The cached token, fetched anew when close to expiry or when ``stale`` was rejected."""
        async with self._token_lock:
            if self._token is not None and self._token == stale:
                self._token = None
            if self._token is None or time.monotonic() >= self._token_expires:
                response = await self._send(
                    "POST", "/oauth/token", operation="authenticate",
                    data={"grant_type": "client_credentials"},
                    auth=(self._client_id, self._client_secret.get_secret_value()),
                )
                try:
                    body = response.json()
                    token, ttl = str(body["access_token"]), float(body.get("expires_in", 3600))
                except (ValueError, KeyError, TypeError):
                    raise ServiceUnavailable(
                        "aura returned an unreadable token response to authenticate",
                        details={"service": SERVICE, "operation": "authenticate",
                                 "status": response.status_code},
                    ) from None
                # Refresh a little before Aura would, so a request never carries a dying token.
                self._token = token
                self._token_expires = time.monotonic() + ttl - min(60.0, ttl * 0.1)
            return self._token

    # ------------------------------------------------------------------- requests
    async def _request(
        self, method: str, path: str, operation: str, *, accept: Collection[int] = (), **kwargs: Any,
    ) -> httpx.Response:
        """An authenticated call; raises our error unless it succeeded or its status is accepted."""
        token = await self._access_token()
        response = await self._send(
            method, path, operation=operation, accept={*accept, *TOKEN_REFUSED},
            headers={"Authorization": f"Bearer {token}"}, **kwargs,
        )
        if response.status_code in TOKEN_REFUSED:
            # Expired (403) or revoked (401) token: fetch a new one and try once more. A refusal
            # after that is the boundary's: our client credentials are wrong.
            token = await self._access_token(stale=token)
            response = await self._send(
                method, path, operation=operation, accept=accept,
                headers={"Authorization": f"Bearer {token}"}, **kwargs,
            )
        return response

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to Aura, within the account's budget."""
        if self._budget is not None:
            await self._budget.acquire()
        return await self._aura.request(self._http, method, path, **kwargs)


def _data(response: httpx.Response, operation: str) -> Any:
    try:
        return response.json()["data"]
    except (ValueError, KeyError, TypeError):
        raise ServiceUnavailable(
            f"aura returned an unreadable body to {operation}",
            details={"service": SERVICE, "operation": operation, "status": response.status_code},
        ) from None
