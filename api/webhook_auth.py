"""Authenticity of the auth service's webhooks, checked on the raw body before it is parsed.

Two ways to prove a delivery comes from the auth service, both keyed by ``settings.webhook_secret``:

* Standard Webhooks (https://www.standardwebhooks.com), checked by ``tenantflow.standard_webhooks``
  (the one implementation, shared with the completion events tenantflow sends). A secret written
  ``whsec_<base64>`` (or ``v1,whsec_<base64>``) is used base64-decoded, as the specification's
  libraries do; any other secret is used as its UTF-8 bytes.
* ``Authorization: Bearer <secret>``, for database webhooks that can only send static headers.

Every comparison is constant-time. A signature, when present, is the method used.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from tenantflow import standard_webhooks


class WebhookRejected(Exception):  # noqa: N818 - reads as what happened to the delivery
    """The delivery could not be authenticated; ``reason`` says why (safe to return)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WebhookNotConfigured(WebhookRejected):
    """No webhook secret is configured, so no delivery can be authenticated."""


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    tolerance_seconds: int,
    now: float | None = None,
) -> str:
    """Check that ``body`` was sent by the holder of ``secret``; returns the method that proved it.

    Args:
        headers: The request headers (case-insensitive mapping, as Starlette's).
        body: The raw request body, exactly as received.
        secret: ``settings.webhook_secret``.
        tolerance_seconds: How far ``webhook-timestamp`` may be from ``now``, either way.
        now: The current unix time (tests pass their own).

    Returns:
        ``"signature"`` or ``"bearer"``.

    Raises:
        WebhookNotConfigured: ``secret`` is empty.
        WebhookRejected: No credentials, a bad signature or token, or a stale timestamp.
    """
    if not secret:
        raise WebhookNotConfigured("the signup webhook has no secret configured")
    if headers.get("webhook-signature") is not None:
        verify_signature(headers, body, secret=secret, tolerance_seconds=tolerance_seconds, now=now)
        return "signature"
    if headers.get("authorization") is not None:
        verify_bearer(headers["authorization"], secret=secret)
        return "bearer"
    raise WebhookRejected("missing webhook signature or bearer token")


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    tolerance_seconds: int,
    now: float | None = None,
) -> None:
    """Verify a Standard Webhooks signature (see the module docstring); raises ``WebhookRejected``."""
    try:
        standard_webhooks.verify(headers, body, secret=secret, tolerance_seconds=tolerance_seconds, now=now)
    except standard_webhooks.WebhookVerificationError as exc:
        raise WebhookRejected(str(exc)) from None


def verify_bearer(authorization: str, *, secret: str) -> None:
    """Verify ``Authorization: Bearer <secret>``; raises ``WebhookRejected``."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise WebhookRejected("Authorization must be 'Bearer <webhook secret>'")
    if not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise WebhookRejected("webhook bearer token does not match")
