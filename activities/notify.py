"""Delivering a completion event to one receiver: a signed POST (Standard Webhooks).

The workflow decides the event (its id, type, time and data: ``tenantflow.contracts.TenantEvent``);
this activity only serializes it, signs it with ``settings.event_webhook_secret`` and sends it, so
every attempt sends the same body under the same ``webhook-id``, and only ``webhook-timestamp`` (the
attempt's send time, which the receiver checks against replays) and the signature change.

What the receiver's answer means goes through the project's one HTTP error table
(``tenantflow.http_errors``), with 409 added to its "try again later" statuses:

    2xx                                  delivered
    transport error, timeout, 5xx, 3xx,  ServiceUnavailable: retried by Temporal (WEBHOOK_RETRY), after
    408, 409, 425, 429                   the receiver's Retry-After if it sent one
    401, 403                             ConfigurationError: the receiver refuses our signature
    any other 4xx (410 Gone, ...)        ServiceRejected: the receiver refuses the event; not retried

The worker sends only to URLs in its own settings: a run's input names its receivers, and an input
naming any other URL (or one removed from settings since the run started) is refused, not sent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import timedelta

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import Deps
from activities.mirror import describe_error
from tenantflow.contracts import DeliveryInput, DeliveryResult, TenantEvent
from tenantflow.errors import ConfigurationError, TenantflowError
from tenantflow.http_errors import HttpService
from tenantflow.standard_webhooks import webhook_headers
from tenantflow.tls import shared_ssl_context

log = logging.getLogger(__name__)

# The spec recommends giving receivers 15 to 30 s to answer.
REQUEST_TIMEOUT_SECONDS = 20.0
# A 409 is a receiver still busy with the same webhook-id (a concurrent duplicate): try later.
RECEIVER = HttpService("webhook", retryable=frozenset({409}))
USER_AGENT = "tenantflow-webhooks/1"
# A receiver's Retry-After is honoured up to the retry policy's longest interval (WEBHOOK_RETRY).
MAX_RETRY_AFTER_SECONDS = 300.0


def event_body(event: TenantEvent) -> bytes:
    """The JSON body of ``event``: ``{"type", "id", "timestamp", "data"}``, compact; ``data`` keys
    that do not apply to the event (``failed_step``, ``error`` outside ``tenant.failed``) are left out."""
    data = {key: value for key, value in asdict(event.data).items() if value is not None}
    body = {"type": event.type, "id": event.id, "timestamp": event.timestamp, "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class NotifyActivities:
    """The completion-webhook activity, bound to the worker's settings."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    @activity.defn(name="deliver_event")
    async def deliver_event(self, input: DeliveryInput) -> DeliveryResult:
        """POST ``input.event`` to ``input.url``, signed; returns once the receiver answered 2xx.

        Raises:
            ApplicationError: Retryable for outages and "later" statuses, non-retryable when the
                receiver refuses the event or the URL is not configured (see the module docstring).
        """
        info = activity.info()
        try:
            status = await self._post(input)
        except TenantflowError as exc:
            raise _failure(exc, input, attempt=info.attempt) from None
        log.info("event %s (%s) delivered to %s: HTTP %d (attempt %d)",
                 input.event.id, input.event.type, input.url, status, info.attempt)
        return DeliveryResult(url=input.url, status_code=status, attempt=info.attempt)

    async def _post(self, input: DeliveryInput) -> int:
        settings = self.deps.settings
        if input.url not in settings.event_webhook_urls:
            raise ConfigurationError(
                f"{input.url} is not in this worker's event_webhook_urls (removed since the run "
                "started?): the event is not sent there", details={"url": input.url},
            )
        body = event_body(input.event)
        headers = webhook_headers(settings.event_webhook_secret.get_secret_value(), input.event.id, body)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_SECONDS, verify=shared_ssl_context()) as http:
            response = await RECEIVER.request(
                http, "POST", input.url, operation=f"delivery of {input.event.type} {input.event.id}",
                content=body, headers={**headers, "content-type": "application/json",
                                       "user-agent": USER_AGENT},
            )
        return response.status_code


def _failure(exc: TenantflowError, input: DeliveryInput, *, attempt: int) -> ApplicationError:
    """The activity's failure for ``exc``: retryable or not by our error tree, after the receiver's
    ``Retry-After`` if it asked for a wait."""
    message, details, retryable = describe_error(exc, attempt=attempt)
    details = {**details, "event_id": input.event.id, "url": input.url}
    wait = details.get("retry_after_seconds")
    delay = timedelta(seconds=min(wait, MAX_RETRY_AFTER_SECONDS)) if retryable and wait else None
    if retryable:
        log.warning("event %s not delivered to %s (attempt %d), will retry: %s",
                    input.event.id, input.url, attempt, message)
    else:
        log.warning("event %s refused by %s, not retried: %s", input.event.id, input.url, message)
    return ApplicationError(message, details, type=details["type"], non_retryable=not retryable,
                            next_retry_delay=delay)
