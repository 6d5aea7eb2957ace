"""The API's one translation of errors into HTTP responses.

Routes do not catch Temporal, database or tenantflow errors; they propagate to the handlers
installed here, and ``to_http`` decides the status code and the message (``{"detail": ...}``).
Messages are ours or the workflow's own rejection reason, never a driver's text, so they hold no
connection strings or secrets.

Mapping: ``ANSWERS``, a table from exception type to status code and ``detail``, looked up along the
exception's MRO, so the most specific entry wins (``InvalidName`` before ``PermanentError``,
``WebhookNotConfigured`` before ``WebhookRejected``) whatever the table's order:

- ``WorkflowUpdateFailedError`` → 409 with the workflow's reason (its update validator refused:
  nothing has failed, a retry is already under way).
- ``WorkflowUpdateRPCTimeoutOrCancelledError`` → 504: no worker took the update in time.
- ``WorkflowAlreadyStartedError`` → 409: the run exists already.
- ``RPCError``: NOT_FOUND → 409 (every workflow the API addresses belongs to a known project, so
  "not found" means "no longer running"); UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED → 503;
  others → 502.
- SQLAlchemy connection and pool errors → 503: the mirror database is unreachable.
- ``pydantic.ValidationError`` from a body the route parses itself, and FastAPI's
  ``RequestValidationError`` → 400 when the body is not JSON at all, else 422.
- ``WebhookNotConfigured`` → 503; ``WebhookRejected`` → 401.
- ``InvalidName`` → 422; other ``PermanentError`` → 409; ``TransientError`` → 503.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic_core import ErrorDetails
from sqlalchemy import exc as sa_exc
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.webhook_auth import WebhookNotConfigured, WebhookRejected
from tenantflow.errors import InvalidName, PermanentError, TenantflowError, TransientError

log = logging.getLogger(__name__)

_RPC_UNREACHABLE = {RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED}


@dataclass(frozen=True)
class Answer:
    """The response to one kind of error: its status code and how ``detail`` is told."""

    status: int
    detail: Callable[[Any], Any]


def said(text: str) -> Callable[[Any], str]:
    """A fixed ``detail``, whatever the exception says (foreign messages may carry connection details)."""
    return lambda _: text


def _message(exc: TenantflowError) -> str:
    return exc.message


def _reason(exc: WebhookRejected) -> str:
    return exc.reason


def _update_reason(exc: WorkflowUpdateFailedError) -> str:
    cause = exc.cause
    return cause.message if isinstance(cause, ApplicationError) else "the workflow rejected the request"


def _rpc_answer(exc: RPCError) -> Answer:
    if exc.status == RPCStatusCode.NOT_FOUND:
        return Answer(status.HTTP_409_CONFLICT, said("the provisioning run is not running (it has finished)"))
    if exc.status in _RPC_UNREACHABLE:
        return Answer(status.HTTP_503_SERVICE_UNAVAILABLE, said("Temporal is unavailable"))
    return Answer(status.HTTP_502_BAD_GATEWAY, said(f"Temporal answered {exc.status.name}"))


def _validation_errors(exc: pydantic.ValidationError) -> list[ErrorDetails]:
    return exc.errors(include_url=False, include_input=False, include_context=False)


def _body_errors(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    # Like FastAPI's own 422 body, minus the input (a webhook's record may hold personal data).
    return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in _validation_errors(exc)]


NOT_JSON = "the request body is not valid JSON"


def _validation_answer(exc: pydantic.ValidationError) -> Answer:
    if any(e["type"] == "json_invalid" for e in _validation_errors(exc)):
        return Answer(status.HTTP_400_BAD_REQUEST, said(NOT_JSON))
    return Answer(status.HTTP_422_UNPROCESSABLE_CONTENT, _body_errors)


_MIRROR_DOWN = Answer(status.HTTP_503_SERVICE_UNAVAILABLE, said("the mirror database is unavailable"))

# An ``Answer``, or a function of the exception for the types whose answer depends on the instance.
ANSWERS: dict[type[Exception], Answer | Callable[[Any], Answer]] = {
    WorkflowUpdateFailedError: Answer(status.HTTP_409_CONFLICT, _update_reason),
    WorkflowUpdateRPCTimeoutOrCancelledError: Answer(
        status.HTTP_504_GATEWAY_TIMEOUT, said("the workflow did not answer in time (is a worker running?)")
    ),
    WorkflowAlreadyStartedError: Answer(
        status.HTTP_409_CONFLICT, said("the provisioning run already exists")
    ),
    RPCError: _rpc_answer,
    sa_exc.OperationalError: _MIRROR_DOWN,
    sa_exc.InterfaceError: _MIRROR_DOWN,
    sa_exc.TimeoutError: _MIRROR_DOWN,
    pydantic.ValidationError: _validation_answer,
    WebhookNotConfigured: Answer(status.HTTP_503_SERVICE_UNAVAILABLE, _reason),
    WebhookRejected: Answer(status.HTTP_401_UNAUTHORIZED, _reason),
    InvalidName: Answer(status.HTTP_422_UNPROCESSABLE_CONTENT, _message),
    TransientError: Answer(status.HTTP_503_SERVICE_UNAVAILABLE, _message),
    PermanentError: Answer(status.HTTP_409_CONFLICT, _message),
}
HANDLED: tuple[type[Exception], ...] = tuple(ANSWERS)


def to_http(exc: Exception) -> tuple[int, Any]:
    """The status code and ``detail`` of the response for ``exc`` (an instance of one of ``HANDLED``).

    The most specific entry of ``ANSWERS`` along the exception's MRO decides.
    """
    for kind in type(exc).__mro__:
        entry = ANSWERS.get(kind)
        if entry is not None:
            answer = entry if isinstance(entry, Answer) else entry(exc)
            return answer.status, answer.detail(exc)
    raise TypeError(f"no HTTP mapping for {type(exc).__name__}")  # a bug: a handler without an answer


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    code, detail = to_http(exc)
    if code >= 500:
        # The type only: foreign messages can carry connection details.
        log.warning("%s %s -> %d (%s)", request.method, request.url.path, code, type(exc).__name__)
    headers = {"Retry-After": "5"} if code in (502, 503, 504) else None
    return JSONResponse({"detail": detail}, status_code=code, headers=headers)


# How much of an invalid input a 422 repeats: enough to recognise it, never a megabyte back.
ECHO_MAX = 200


def _capped(value: Any) -> Any:
    """``value`` as JSON can carry it (a body sent as form data arrives as bytes), cut to
    ``ECHO_MAX`` characters."""
    value = jsonable_encoder(value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= ECHO_MAX:
        return value
    return f"{text[:ECHO_MAX]}… ({len(text)} characters)"


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 (each error's type, loc, msg and input), with the echoed input and message
    capped at ``ECHO_MAX`` characters; a body that is not JSON at all is a bad request (400)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse({"detail": NOT_JSON}, status_code=status.HTTP_400_BAD_REQUEST)
    detail = [
        {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": _capped(str(e.get("msg", ""))),
         **({"input": _capped(e["input"])} if "input" in e else {})}
        for e in errors
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def install(app: FastAPI) -> None:
    """Register the handler for every error ``to_http`` maps, and for invalid requests."""
    for exc_type in HANDLED:
        app.add_exception_handler(exc_type, _handle)
    app.add_exception_handler(RequestValidationError, _request_validation)
