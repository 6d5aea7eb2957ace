"""The one boundary between the HTTP APIs we call and our error tree.

The platform service clients (``activities.platform_http``: auth, realtime, storage), the Aura API
client (``activities.graph.aura_api``) and ArcadeDB's server API (``activities.graph.arcadedb``)
send through :meth:`HttpService.request` and so translate every failure here, with one table, the
way httpx's ``map_httpcore_exceptions`` maps httpcore's exceptions. First match wins::

    what happened                        our error            retried by   why
    httpx.TimeoutException               ServiceUnavailable   Temporal     connect/read/write/pool timeout
    httpx.TransportError                 ServiceUnavailable   Temporal     refused, reset, DNS, protocol
    any other httpx.HTTPError            ServiceUnavailable   Temporal     e.g. an undecodable body
    HTTP 401, 403                        ConfigurationError   nobody       our admin credentials are wrong
    HTTP 408, 425, 429                   ServiceUnavailable   Temporal     "try again later"
    any other HTTP 4xx                   ServiceRejected      nobody       the request itself is refused
    HTTP 5xx, or a status not expected   ServiceUnavailable   Temporal     the service failed

A client whose peer means "later" by a status the table calls a refusal lists it in ``retryable``
(the completion-webhook receivers: 409, a receiver still busy with the same event id).

401 and 403 are a configuration error for every service alike: each request that can reach this
table carries the service's admin credential from settings (a caller that sends a tenant's own
key, like the auth health check, accepts those statuses and judges them itself), so a refusal
means a setting is wrong, and an operator, not a retry, fixes it. Like ``ServiceRejected`` it is a
``PermanentError``. (The Aura client first fetches a new token once: an expired token is not a
wrong credential.)

Details have one shape for every service (JSON-safe, never a secret)::

    service              "auth", "realtime", "storage", "aura", "arcadedb"
    operation            what we were doing ("create instance"; by default "METHOD path")
    method, path         the request (a path holds names, never secrets)
    status               the HTTP status; None for a transport error
    error                the httpx exception class, for a transport error
    service_message      the service's own explanation, secrets scrubbed, at most 300 characters
    ...                  what the service's error body adds (Aura: reason, field; ArcadeDB: exception)
    retry_after_seconds  the wait the service asked for (Retry-After), if it asked

A client passes only what differs (:class:`HttpService`): its name, how to read its error body (a
:data:`BodyReader`) and the secrets it sends, scrubbed from whatever the service says back.

Retries: one rule for every service. A retryable error is retried by Temporal, with the step's
retry policy; nothing is retried inside the activity except a 429 that says when (``Retry-After``
of at most ``MAX_RETRY_AFTER_SECONDS``), sent again up to ``MAX_THROTTLED_RETRIES`` times. A
throttled request was not acted on, so even a POST is safe to repeat; a 5xx or a lost answer may
have been acted on, and the step's next attempt checks before it writes again.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tenantflow.errors import ConfigurationError, ServiceRejected, ServiceUnavailable, TenantflowError

log = logging.getLogger(__name__)

MAX_SERVICE_MESSAGE = 300
REDACTED = "[redacted]"
# A throttled request is repeated in the activity only if the service says when, and soon: a longer
# wait is Temporal's (the activity would otherwise sit idle, holding a worker slot).
MAX_RETRY_AFTER_SECONDS = 60.0
MAX_THROTTLED_RETRIES = 3


@dataclass(frozen=True)
class Rule:
    """One row of the table: the error to raise and how its message phrases what happened."""

    error: type[TenantflowError]
    says: str


# ---------------------------------------------------------------------------------------- the table
TRANSPORT_RULES: tuple[tuple[type[httpx.HTTPError], Rule], ...] = (
    (httpx.TimeoutException, Rule(ServiceUnavailable, "timed out")),
    (httpx.TransportError, Rule(ServiceUnavailable, "is unreachable")),
    (httpx.HTTPError, Rule(ServiceUnavailable, "failed")),
)
STATUS_RULES: tuple[tuple[Collection[int], Rule], ...] = (
    (frozenset({401, 403}), Rule(ConfigurationError, "refused our credentials for")),
    (frozenset({408, 425, 429}), Rule(ServiceUnavailable, "is unavailable for")),
    (range(400, 500), Rule(ServiceRejected, "rejected")),
)
OTHER_STATUS = Rule(ServiceUnavailable, "is unavailable for")  # 5xx, or a 1xx/3xx nobody asked for


def rule_for(outcome: httpx.Response | httpx.HTTPError, *, retryable: Collection[int] = ()) -> Rule:
    """The row of the table that ``outcome`` (a failed response or an httpx exception) falls under;
    statuses in ``retryable`` are the service's own "try again later"."""
    if isinstance(outcome, httpx.Response):
        if outcome.status_code in retryable:
            return OTHER_STATUS
        return next((rule for statuses, rule in STATUS_RULES if outcome.status_code in statuses),
                    OTHER_STATUS)
    return next(rule for kind, rule in TRANSPORT_RULES if isinstance(outcome, kind))


# --------------------------------------------------------------------------- what a service says
@dataclass(frozen=True)
class Said:
    """A service's explanation of an error response: its text and any structured fields worth
    keeping (which field, which reason code, which exception class)."""

    message: str
    details: dict[str, Any] = field(default_factory=dict)


BodyReader = Callable[[httpx.Response], Said]


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or the body's text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


def body_message(response: httpx.Response) -> Said:
    """The common shapes: ``{"message"|"error_description"|"error"|"detail": text}`` or plain text."""
    body = json_body(response)
    if isinstance(body, Mapping):
        for key in ("message", "error_description", "error", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return Said(value)
        return Said("")
    return Said(body.strip() if isinstance(body, str) else "")


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each (non-empty) secret replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def clip(text: str, limit: int = MAX_SERVICE_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def retry_after(response: httpx.Response) -> float | None:
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


# ---------------------------------------------------------------------------------- the boundary
def http_error(
    outcome: httpx.Response | httpx.HTTPError,
    *,
    service: str,
    method: str,
    path: str,
    operation: str | None = None,
    read: BodyReader = body_message,
    secrets: Iterable[str] = (),
    retryable: Collection[int] = (),
) -> TenantflowError:
    """THE translation of a failed HTTP call into our error tree (see the module's table).

    Args:
        outcome: The unsuccessful response, or the exception httpx raised.
        service: The service's name (first word of the message, ``details["service"]``).
        method: The request's HTTP method.
        path: The request path relative to the service's base URL (holds no secret).
        operation: What we were doing, in words; ``"METHOD path"`` by default.
        read: How this service explains an error in its response body.
        secrets: Values scrubbed from the service's explanation, should it echo one.
        retryable: 4xx statuses that mean "try again later" for this service.

    Returns:
        ``ServiceUnavailable`` (retryable), ``ServiceRejected`` or ``ConfigurationError``
        (permanent), with the details described in the module docstring.
    """
    operation = operation or f"{method} {path}"
    rule = rule_for(outcome, retryable=retryable)
    details: dict[str, Any] = {"service": service, "operation": operation, "method": method, "path": path}
    if not isinstance(outcome, httpx.Response):
        details |= {"status": None, "error": type(outcome).__name__}
        return rule.error(f"{service} {rule.says} during {operation}: {type(outcome).__name__}",
                          details=details)
    said = read(outcome)
    secrets = tuple(secrets)
    # Scrub before cutting, so no prefix of a secret survives at the cut.
    message = clip(redact(said.message, secrets) or outcome.reason_phrase or "no message")
    extra = {k: redact(v, secrets) if isinstance(v, str) else v for k, v in said.details.items()}
    details |= {"status": outcome.status_code, "service_message": message, **extra}
    wait = retry_after(outcome)
    if wait is not None:
        details["retry_after_seconds"] = wait
    return rule.error(f"{service} {rule.says} {operation}: HTTP {outcome.status_code}: {message}",
                      details=details)


async def send(
    http: httpx.AsyncClient, method: str, path: str, *, operation: str | None = None, **kwargs: Any
) -> httpx.Response:
    """One request; a 429 that says when (``Retry-After``) is sent again after that wait.

    Bounded: at most ``MAX_THROTTLED_RETRIES`` repeats, none after a wait longer than
    ``MAX_RETRY_AFTER_SECONDS``. Every other outcome is returned (or raised, for httpx exceptions)
    at once; retrying it is Temporal's job.

    Args:
        http: The service's client (base URL, auth, timeouts).
        method: HTTP method.
        path: Path relative to the client's base URL.
        operation: For the log line of a throttled request.
        **kwargs: Passed to ``httpx.AsyncClient.request`` (``json``, ``params``, ``headers``, ...).

    Raises:
        httpx.HTTPError: As httpx raised it; translate it with :func:`http_error`.
    """
    for attempt in range(MAX_THROTTLED_RETRIES + 1):
        response = await http.request(method, path, **kwargs)
        wait = retry_after(response) if response.status_code == 429 else None
        if wait is None or wait > MAX_RETRY_AFTER_SECONDS or attempt == MAX_THROTTLED_RETRIES:
            return response
        log.info("%s: throttled (429), sending again in %.2fs as asked (retry %d of %d)",
                 operation or f"{method} {path}", wait, attempt + 1, MAX_THROTTLED_RETRIES)
        await asyncio.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class HttpService:
    """What one HTTP API adds to the boundary: its name, how it explains errors, what to scrub.

    Args:
        name: ``details["service"]`` and the first word of every message.
        read: How the service's error bodies are read (default: :func:`body_message`).
        secrets: Values this client sends that must never come back in an error.
        retryable: 4xx statuses that mean "try again later" for this service (see the table).
    """

    name: str
    read: BodyReader = body_message
    secrets: tuple[str, ...] = ()
    retryable: frozenset[int] = frozenset()

    def error(
        self, outcome: httpx.Response | httpx.HTTPError, *, method: str, path: str,
        operation: str | None = None,
    ) -> TenantflowError:
        """:func:`http_error` for this service."""
        return http_error(outcome, service=self.name, method=method, path=path, operation=operation,
                          read=self.read, secrets=self.secrets, retryable=self.retryable)

    async def request(
        self, http: httpx.AsyncClient, method: str, path: str, *, operation: str | None = None,
        accept: Collection[int] = (), **kwargs: Any,
    ) -> httpx.Response:
        """Send (see :func:`send`); return the response if it is 2xx or its status is in ``accept``.

        Args:
            http: The service's client.
            method: HTTP method.
            path: Path relative to the client's base URL.
            operation: What we are doing, for messages and details.
            accept: Non-2xx statuses the caller handles itself (e.g. 404 on an existence check).
            **kwargs: Passed to ``httpx.AsyncClient.request``.

        Raises:
            ServiceUnavailable: Transport error, timeout, 408/425/429, 5xx.
            ServiceRejected: Any other 4xx.
            ConfigurationError: 401/403: the service refused our credentials.
        """
        try:
            response = await send(http, method, path, operation=operation, **kwargs)
        except httpx.HTTPError as exc:
            # ``from None``: the httpx exception holds the request, and the request holds headers.
            raise self.error(exc, method=method, path=path, operation=operation) from None
        if response.is_success or response.status_code in accept:
            return response
        raise self.error(response, method=method, path=path, operation=operation)
