"""The API's one translation of errors into HTTP responses.

Routes do not catch Temporal, database or tenantflow errors; they propagate to the handlers
installed here, and ``to_http`` decides the status code and the message (``{"detail": ...}``).
Messages are ours or the workflow's own rejection reason, never a driver's text, so they hold no
connection strings or secrets.

Mapping (first match wins):

- ``WorkflowUpdateFailedError`` → 409 with the workflow's reason (its update validator refused:
  nothing has failed, a retry is already under way).
- ``WorkflowUpdateRPCTimeoutOrCancelledError`` → 504: no worker took the update in time.
- ``WorkflowAlreadyStartedError`` → 409: the run exists already.
- ``RPCError``: NOT_FOUND → 409 (every workflow the API addresses belongs to a known project, so
  "not found" means "no longer running"); UNAVAILABLE / DEADLINE_EXCEEDED → 503; others → 502.
- SQLAlchemy connection and pool errors → 503: the mirror database is unreachable.
- ``pydantic.ValidationError`` from a body the route parses itself → 400 for bad JSON, else 422.
- ``WebhookNotConfigured`` → 503; ``WebhookRejected`` → 401.
- ``InvalidName`` → 422; other ``PermanentError`` → 409; ``TransientError`` → 503.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.webhook_auth import WebhookNotConfigured, WebhookRejected
from tenantflow.errors import InvalidName, PermanentError, TransientError

log = logging.getLogger(__name__)

_RPC_UNREACHABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}
_DB_UNREACHABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)

HANDLED: tuple[type[Exception], ...] = (
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowAlreadyStartedError,
    RPCError,
    *_DB_UNREACHABLE,
    pydantic.ValidationError,
    WebhookRejected,
    InvalidName,
    TransientError,
    PermanentError,
)


def to_http(exc: Exception) -> tuple[int, Any]:
    """The status code and ``detail`` of the response for ``exc`` (one of ``HANDLED``)."""
    if isinstance(exc, WorkflowUpdateFailedError):
        cause = exc.cause
        reason = cause.message if isinstance(cause, ApplicationError) else "the workflow rejected the request"
        return status.HTTP_409_CONFLICT, reason
    if isinstance(exc, WorkflowUpdateRPCTimeoutOrCancelledError):
        return status.HTTP_504_GATEWAY_TIMEOUT, "the workflow did not answer in time (is a worker running?)"
    if isinstance(exc, WorkflowAlreadyStartedError):
        return status.HTTP_409_CONFLICT, "the provisioning run already exists"
    if isinstance(exc, RPCError):
        return _rpc_to_http(exc)
    if isinstance(exc, _DB_UNREACHABLE):
        return status.HTTP_503_SERVICE_UNAVAILABLE, "the mirror database is unavailable"
    if isinstance(exc, pydantic.ValidationError):
        return _validation_to_http(exc)
    if isinstance(exc, WebhookNotConfigured):
        return status.HTTP_503_SERVICE_UNAVAILABLE, exc.reason
    if isinstance(exc, WebhookRejected):
        return status.HTTP_401_UNAUTHORIZED, exc.reason
    if isinstance(exc, InvalidName):
        return status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message
    if isinstance(exc, TransientError):
        return status.HTTP_503_SERVICE_UNAVAILABLE, exc.message
    if isinstance(exc, PermanentError):
        return status.HTTP_409_CONFLICT, exc.message
    raise TypeError(f"no HTTP mapping for {type(exc).__name__}")  # a bug: HANDLED and to_http disagree


def _rpc_to_http(exc: RPCError) -> tuple[int, str]:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return status.HTTP_409_CONFLICT, "the provisioning run is not running (it has finished)"
    if exc.status in _RPC_UNREACHABLE:
        return status.HTTP_503_SERVICE_UNAVAILABLE, "Temporal is unavailable"
    return status.HTTP_502_BAD_GATEWAY, f"Temporal answered {exc.status.name}"


def _validation_to_http(exc: pydantic.ValidationError) -> tuple[int, Any]:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return status.HTTP_400_BAD_REQUEST, "the request body is not valid JSON"
    # Like FastAPI's own 422 body, minus the input (a webhook's record may hold personal data).
    return status.HTTP_422_UNPROCESSABLE_CONTENT, [
        {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
    ]


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    code, detail = to_http(exc)
    if code >= 500:
        # The type only: foreign messages can carry connection details.
        log.warning("%s %s -> %d (%s)", request.method, request.url.path, code, type(exc).__name__)
    headers = {"Retry-After": "5"} if code in (502, 503, 504) else None
    return JSONResponse({"detail": detail}, status_code=code, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handler for every error ``to_http`` maps."""
    for exc_type in HANDLED:
        app.add_exception_handler(exc_type, _handle)
