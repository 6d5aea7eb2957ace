"""The CLI's one door to the API: ``ApiClient`` makes every request, and ``translated`` and
``error_for`` are the only places where httpx's exceptions and error responses become the
CLI's errors (``cli.errors``), with the API's own message.

The CLI is a plain HTTP client of the API: it never imports the workflows, activities or the
store, so it runs wherever the API is reachable (``tests/test_layering.py`` checks it).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from cli.errors import ApiError, CliError, NotAuthorized, NotFound, Unavailable, Unreachable

DEFAULT_API_URL = "http://127.0.0.1:8000"
REQUEST_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# The server sends a keepalive comment every 15 s; three missed ones mean the connection is dead.
STREAM_READ_TIMEOUT = 45.0
TOKEN_HINT = "set TENANTFLOW_API_TOKEN or pass --token (scripts/dev prints the export line)"

# What a transport failure is called, looked up along the exception's MRO (most specific wins).
TRANSPORT_ERRORS: dict[type[Exception], str] = {
    httpx.ConnectTimeout: "the API at {url} did not accept the connection in time",
    httpx.ConnectError: "cannot connect to the API at {url} ({reason}); is it running?",
    httpx.TimeoutException: "the API at {url} did not answer in time",
    httpx.RemoteProtocolError: "the API at {url} closed the connection",
    httpx.TransportError: "lost the connection to the API at {url} ({reason})",
}
# Error statuses with their own error type; any other 4xx/5xx is an ``ApiError``.
STATUS_ERRORS: dict[int, type[ApiError]] = {
    401: NotAuthorized, 403: NotAuthorized, 404: NotFound,
    502: Unavailable, 503: Unavailable, 504: Unavailable,
}


def api_message(response: httpx.Response) -> str:
    """The API's explanation of an error response: its ``detail`` (a string, or FastAPI's list of
    validation errors, each told as ``field: message``), else the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_validation_message(e) for e in detail)
    text = response.text.strip()[:200]
    return text or response.reason_phrase


def _validation_message(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    # loc is ["body", "name"] or ["query", "limit"]: the field is what a user typed.
    field = ".".join(str(part) for part in error.get("loc", [])[1:])
    return f"{field}: {error.get('msg')}" if field else str(error.get("msg"))


def error_for(response: httpx.Response) -> ApiError:
    """The error for a 4xx/5xx ``response`` (its body must have been read)."""
    kind = STATUS_ERRORS.get(response.status_code, ApiError)
    message = api_message(response)
    if kind is NotAuthorized:
        message = f"{message} ({TOKEN_HINT})"
    return kind(f"HTTP {response.status_code}: {message}", status=response.status_code)


def transport_error(exc: httpx.TransportError, url: str) -> Unreachable:
    """The error for a request that got no HTTP answer."""
    for kind in type(exc).__mro__:
        template = TRANSPORT_ERRORS.get(kind)
        if template is not None:
            return Unreachable(template.format(url=url, reason=str(exc) or type(exc).__name__))
    raise TypeError(f"not a transport error: {exc!r}")  # unreachable: TransportError is in the table


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn httpx's transport errors raised inside the block into ``Unreachable``."""
    try:
        yield
    except httpx.TransportError as exc:
        raise transport_error(exc, url) from None


def project_path(ref: str, *rest: str) -> str:
    """``/v1/projects/{ref}/...`` with ``ref`` (an id or a name) quoted as one path segment."""
    return "/".join(["/v1/projects", quote(ref, safe=""), *rest])


class ApiClient:
    """The tenantflow API, authenticated with a bearer token. Methods return the JSON answer."""

    def __init__(self, base_url: str, token: str, *, timeout: httpx.Timeout = REQUEST_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "tenantflow-cli"},
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None, timeout: float | None = None,
    ) -> Any:
        """One request; the decoded JSON of a 2xx answer.

        Raises:
            ApiError: the API answered 4xx/5xx (a subclass for 401/403, 404, 502-504).
            Unreachable: no answer.
        """
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        with translated(self.base_url):
            response = await self._http.request(
                method, path, json=json, headers=headers,
                params={k: v for k, v in (params or {}).items() if v is not None}, **extra,
            )
        if response.is_error:
            raise error_for(response)
        try:
            return response.json()
        except ValueError:
            raise CliError(f"the API at {self.base_url} answered {path} with something not JSON") from None

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, headers: dict[str, str] | None = None
    ) -> AsyncIterator[httpx.Response]:
        """A streaming GET (server-sent events); transport errors while reading are translated too.

        Raises:
            ApiError: the API answered 4xx/5xx instead of a stream.
            Unreachable: no answer, or the connection dropped.
        """
        timeout = httpx.Timeout(REQUEST_TIMEOUT.connect, read=STREAM_READ_TIMEOUT)
        with translated(self.base_url):
            async with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.is_error:
                    await response.aread()
                    raise error_for(response)
                yield response

    # ---------------------------------------------------------------------------- projects
    async def create_project(self, name: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.call("POST", "/v1/projects", json={"name": name}, headers=headers)

    async def list_projects(self, **filters: Any) -> dict[str, Any]:
        """One page: ``{"items": [...], "next_cursor": str | None, "limit": n}``."""
        return await self.call("GET", "/v1/projects", params=filters)

    async def project(self, ref: str) -> dict[str, Any]:
        return await self.call("GET", project_path(ref))

    async def retry(self, ref: str, *, reason: str = "") -> dict[str, Any]:
        return await self.call("POST", project_path(ref, "retry"), json={"reason": reason})

    async def delete(self, ref: str) -> dict[str, Any]:
        return await self.call("DELETE", project_path(ref))

    async def cancel(self, ref: str) -> dict[str, Any]:
        return await self.call("POST", project_path(ref, "cancel"))

    async def connection(self, ref: str) -> dict[str, Any]:
        return await self.call("GET", project_path(ref, "connection"))

    async def retry_failed(self, **body: Any) -> dict[str, Any]:
        return await self.call(
            "POST", "/v1/projects/retry-failed", json={k: v for k, v in body.items() if v is not None}
        )

    # ---------------------------------------------------------------------------- API keys
    async def create_key(self, name: str, scope: str) -> dict[str, Any]:
        return await self.call("POST", "/v1/api-keys", json={"name": name, "scope": scope})

    async def list_keys(self) -> list[dict[str, Any]]:
        return await self.call("GET", "/v1/api-keys")

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        return await self.call("DELETE", "/v1/api-keys/" + quote(key_id, safe=""))

    async def retry_failed_status(self, operation_id: str) -> dict[str, Any]:
        path = "/v1/projects/retry-failed/" + quote(operation_id, safe="")
        return await self.call("GET", path)
