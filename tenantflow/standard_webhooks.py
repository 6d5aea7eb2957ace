"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec 1.0.0), both ways.

One implementation for what tenantflow sends (completion events, ``activities.notify``) and what it
receives (the auth service's signup webhook, ``api.webhook_auth``), and for receivers written in
Python, which can import :func:`verify` as it is.

The scheme, symmetric (``v1``)::

    webhook-id:        the event's id, the same on every retry (receivers dedupe on it)
    webhook-timestamp: unix seconds of this attempt
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>[ v1,<...> ...]

The key is the secret written ``whsec_<base64 of 24 to 64 random bytes>``, base64-decoded. Several
space-separated signatures may be sent (key rotation): one valid ``v1`` signature suffices; other
versions (``v1a``, asymmetric) are skipped. Comparisons are constant-time, and a timestamp outside
the tolerance is refused (replay protection).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SIGNATURE_VERSION = "v1"
SECRET_PREFIX = "whsec_"
# The spec: "Random. At least 24 bytes (192 bits, 512 maximum)".
MIN_SECRET_BYTES = 24
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """A delivery is not authentic (or not verifiable); the message says why and is safe to return."""


def generate_secret(nbytes: int = 32) -> str:
    """A new signing secret, ``whsec_<base64>`` of ``nbytes`` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def decode_secret(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret, strictly: anything else is a ``ValueError``.

    Settings use it to refuse a malformed secret at start-up rather than at the first delivery.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must be written {SECRET_PREFIX}<base64>")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(f"is not base64 after {SECRET_PREFIX}") from None
    if not key:
        raise ValueError("is empty")
    return key


def signing_key(secret: str) -> bytes:
    """The HMAC key of ``secret``, leniently, as the spec's libraries read it.

    ``whsec_<base64>`` (also shown as ``v1,whsec_<base64>``) is base64-decoded; any other string is
    used as its UTF-8 bytes (senders that sign with a plain shared secret).
    """
    secret = secret.removeprefix(SIGNATURE_VERSION + ",")
    if secret.startswith(SECRET_PREFIX):
        try:
            return decode_secret(secret)
        except ValueError:
            pass  # not base64 after all: fall back to the literal secret
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The base64 ``v1`` signature of a delivery (what follows ``v1,`` in ``webhook-signature``)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(signing_key(secret), signed, hashlib.sha256).digest()).decode()


def webhook_headers(secret: str, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The three headers of one delivery attempt of ``body``.

    Args:
        secret: The signing secret (``whsec_<base64>``).
        msg_id: The event's id; must not contain ``.`` (the spec: it would make the signed content
            ambiguous).
        body: The exact bytes sent.
        timestamp: Unix seconds of this attempt (default: now).

    Returns:
        ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.
    """
    if not msg_id or "." in msg_id:
        raise ValueError(f"a webhook id must be non-empty and contain no '.': {msg_id!r}")
    sent_at = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(sent_at),
        "webhook-signature": f"{SIGNATURE_VERSION},{sign(secret, msg_id, sent_at, body)}",
    }


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check that ``body`` was signed with ``secret`` no more than ``tolerance_seconds`` ago.

    Args:
        headers: The request's headers; a case-insensitive mapping (Starlette's, httpx's) or a dict
            with lower-case names.
        body: The raw request body, exactly as received (never re-serialized JSON).
        secret: The signing secret the sender was given.
        tolerance_seconds: How far ``webhook-timestamp`` may be from ``now``, either way.
        now: The current unix time (tests pass their own).

    Returns:
        The ``webhook-id``: the event's idempotency key.

    Raises:
        WebhookVerificationError: A header missing, a stale or future timestamp, or no valid signature.
    """
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature") or ""
    if not msg_id or not timestamp:
        raise WebhookVerificationError(
            "webhook-id and webhook-timestamp headers are required with a signature"
        )
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a unix time in seconds") from None
    skew = (time.time() if now is None else now) - sent_at
    if skew > tolerance_seconds:
        raise WebhookVerificationError(f"webhook-timestamp is too old (more than {tolerance_seconds}s)")
    if skew < -tolerance_seconds:
        raise WebhookVerificationError(
            f"webhook-timestamp is too far in the future (more than {tolerance_seconds}s)"
        )
    expected = sign(secret, msg_id, sent_at, body).encode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value.encode(), expected):
            return msg_id
    raise WebhookVerificationError("webhook signature does not match")
