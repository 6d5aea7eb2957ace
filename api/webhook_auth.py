"""Authenticity of the auth service's webhooks, checked on the raw body before it is parsed.

Two ways to prove a delivery comes from the auth service, both keyed by ``settings.webhook_secret``:

* Standard Webhooks (https://www.standardwebhooks.com): headers ``webhook-id``,
  ``webhook-timestamp`` (unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
  ``"{id}.{timestamp}.{body}"``; several space-separated signatures may be sent (key rotation).
  A secret written ``whsec_<base64>`` (or ``v1,whsec_<base64>``) is used base64-decoded, as the
  specification's libraries do; any other secret is used as its UTF-8 bytes.
* ``Authorization: Bearer <secret>``, for database webhooks that can only send static headers.

Every comparison is constant-time. A signature, when present, is the method used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_VERSION = "v1"
SECRET_PREFIX = "whsec_"


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
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature") or ""
    if not msg_id or not timestamp:
        raise WebhookRejected("webhook-id and webhook-timestamp headers are required with a signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRejected("webhook-timestamp is not a unix time in seconds") from None
    skew = (time.time() if now is None else now) - sent_at
    if skew > tolerance_seconds:
        raise WebhookRejected(f"webhook-timestamp is too old (more than {tolerance_seconds}s)")
    if skew < -tolerance_seconds:
        raise WebhookRejected(f"webhook-timestamp is too far in the future (more than {tolerance_seconds}s)")
    expected = sign(secret, msg_id, sent_at, body)
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value.encode(), expected.encode()):
            return
    raise WebhookRejected("webhook signature does not match")


def verify_bearer(authorization: str, *, secret: str) -> None:
    """Verify ``Authorization: Bearer <secret>``; raises ``WebhookRejected``."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise WebhookRejected("Authorization must be 'Bearer <webhook secret>'")
    if not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise WebhookRejected("webhook bearer token does not match")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The base64 ``v1`` signature of a delivery (what the sender puts after ``v1,``)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _key(secret: str) -> bytes:
    # Some senders show the secret as "v1,whsec_..." (version tag included).
    secret = secret.removeprefix(SIGNATURE_VERSION + ",")
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except binascii.Error:
            pass  # not base64 after all: fall back to the literal secret
    return secret.encode()
