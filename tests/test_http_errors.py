"""The one HTTP error boundary (``tenantflow.http_errors``): its table, its details, its one retry.

Served by ``httpx.MockTransport``: what is tested is the translation, the same for every service
(the clients' own tests run it against the stand-ins and a real ArcadeDB).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from activities.graph.arcadedb import arcadedb_message
from activities.graph.aura_api import aura_message
from activities.platform_http import service_message
from tenantflow.errors import ConfigurationError, ServiceRejected, ServiceUnavailable, TenantflowError
from tenantflow.http_errors import MAX_THROTTLED_RETRIES, HttpService

Handler = Callable[[httpx.Request], httpx.Response]


async def call(service: HttpService, handler: Handler, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url="http://svc", transport=httpx.MockTransport(handler)) as http:
        return await service.request(http, "PUT", "/tenants/acme", **kwargs)  # type: ignore[arg-type]


async def failure(service: HttpService, handler: Handler) -> TenantflowError:
    with pytest.raises(TenantflowError) as caught:
        await call(service, handler)
    return caught.value


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, ServiceRejected), (404, ServiceRejected), (409, ServiceRejected), (422, ServiceRejected),
     (401, ConfigurationError), (403, ConfigurationError),
     (408, ServiceUnavailable), (425, ServiceUnavailable), (429, ServiceUnavailable),
     (500, ServiceUnavailable), (502, ServiceUnavailable), (503, ServiceUnavailable),
     (304, ServiceUnavailable)],
)
async def test_the_status_table(status: int, expected: type[TenantflowError]) -> None:
    err = await failure(HttpService("storage"), lambda _: httpx.Response(status, json={"message": "no"}))
    assert type(err) is expected
    assert err.details == {"service": "storage", "operation": "PUT /tenants/acme", "method": "PUT",
                           "path": "/tenants/acme", "status": status, "service_message": "no"}
    assert f"HTTP {status}: no" in err.message


@pytest.mark.parametrize(
    ("raised", "says"),
    [(httpx.ConnectError("refused"), "is unreachable"), (httpx.ReadTimeout("slow"), "timed out"),
     (httpx.RemoteProtocolError("garbage"), "is unreachable"), (httpx.DecodingError("gzip"), "failed")],
)
async def test_transport_errors_are_outages(raised: httpx.HTTPError, says: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised

    err = await failure(HttpService("auth"), handler)
    assert type(err) is ServiceUnavailable and says in err.message
    assert err.details["status"] is None and err.details["error"] == type(raised).__name__
    assert err.__cause__ is None and err.__suppress_context__  # the request (its headers) stays behind


async def test_each_service_says_it_its_own_way_in_the_same_details() -> None:
    aura = await failure(HttpService("aura", read=aura_message), lambda _: httpx.Response(
        400, json={"errors": [{"message": "Region 'x' is not available", "reason": "bad-region",
                               "field": "region"}]}))
    assert aura.details | {"service_message": "Region 'x' is not available", "reason": "bad-region",
                           "field": "region"} == aura.details
    arcade = await failure(HttpService("arcadedb", read=arcadedb_message), lambda _: httpx.Response(
        409, json={"error": "Cannot create", "detail": "Database 'x' already exists",
                   "exception": "com.arcadedb.server.DatabaseAlreadyExistsException"}))
    assert arcade.details["service_message"] == "Database 'x' already exists"
    assert arcade.details["exception"] == "com.arcadedb.server.DatabaseAlreadyExistsException"
    realtime = await failure(HttpService("realtime", read=service_message), lambda _: httpx.Response(
        422, json={"errors": {"jwt_secret": ["can't be blank"]}}))
    assert realtime.details["service_message"] == "jwt_secret can't be blank"
    for err in (aura, arcade, realtime):
        assert type(err) is ServiceRejected
        assert {"service", "operation", "method", "path", "status", "service_message"} <= set(err.details)


async def test_secrets_are_scrubbed_and_messages_cut() -> None:
    secret = "s3cret-value"
    service = HttpService("storage", secrets=(secret,))
    err = await failure(service, lambda _: httpx.Response(400, json={"message": f"bad key {secret}"}))
    assert secret not in repr((err.message, err.details)) and "[redacted]" in err.message
    err = await failure(service, lambda _: httpx.Response(400, text="x" * 1000))
    assert len(err.details["service_message"]) == 300


def answering(*responses: httpx.Response) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving ``responses`` in turn (the last one from then on), and what it was sent."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1]

    return handler, seen


async def test_a_429_that_says_when_is_sent_again_and_only_that() -> None:
    aura = HttpService("aura")
    handler, seen = answering(httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(204))
    assert (await call(aura, handler)).status_code == 204 and len(seen) == 2

    handler, seen = answering(httpx.Response(429))
    err = await failure(aura, handler)
    assert type(err) is ServiceUnavailable and len(seen) == 1  # no Retry-After: Temporal's to retry

    handler, seen = answering(httpx.Response(429, headers={"Retry-After": "3600"}))
    err = await failure(aura, handler)
    assert err.details["retry_after_seconds"] == 3600 and len(seen) == 1  # too long to wait here

    handler, seen = answering(httpx.Response(429, headers={"Retry-After": "0"}))
    err = await failure(aura, handler)
    assert type(err) is ServiceUnavailable and len(seen) == 1 + MAX_THROTTLED_RETRIES  # bounded

    handler, seen = answering(httpx.Response(503))
    err = await failure(aura, handler)
    assert type(err) is ServiceUnavailable and len(seen) == 1  # a 5xx is never repeated here


async def test_accepted_statuses_come_back_to_the_caller() -> None:
    response = await call(HttpService("storage"), lambda _: httpx.Response(404), accept={404})
    assert response.status_code == 404
