"""Standard Webhooks signing and verification, against the specification's published test vector
(standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py: test_sign_function)."""

from __future__ import annotations

import base64
import time

import pytest

from tenantflow.standard_webhooks import (
    WebhookVerificationError,
    decode_secret,
    generate_secret,
    sign,
    verify,
    webhook_headers,
)

# The specification's vector: secret, message id, timestamp, payload and the expected header value.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_PAYLOAD = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signing_the_spec_vector_gives_the_spec_signature() -> None:
    assert "v1," + sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD) == SPEC_SIGNATURE
    headers = webhook_headers(SPEC_SECRET, SPEC_ID, SPEC_PAYLOAD, timestamp=SPEC_TIMESTAMP)
    assert headers == {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP),
                       "webhook-signature": SPEC_SIGNATURE}


def test_the_spec_vector_verifies_at_its_time_and_returns_the_id() -> None:
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TIMESTAMP),
               "webhook-signature": SPEC_SIGNATURE}
    assert verify(headers, SPEC_PAYLOAD, secret=SPEC_SECRET, now=SPEC_TIMESTAMP + 10) == SPEC_ID


def test_one_valid_signature_among_several_suffices_and_other_versions_are_skipped() -> None:
    body = b'{"type":"tenant.online"}'
    headers = webhook_headers(SPEC_SECRET, "evt-1", body)
    valid = headers["webhook-signature"]
    wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    headers["webhook-signature"] = " ".join([wrong, "v2," + valid.partition(",")[2], valid, "v1a,xyz"])
    assert verify(headers, body, secret=SPEC_SECRET) == "evt-1"
    headers["webhook-signature"] = " ".join([wrong, "v2," + valid.partition(",")[2]])
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(headers, body, secret=SPEC_SECRET)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda h, b: (h, b + b" "), "does not match"),  # a re-serialized body
    (lambda h, b: ({**h, "webhook-id": "evt-2"}, b), "does not match"),  # the id is signed too
    (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "are required"),
    (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-timestamp"}, b), "are required"),
    (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "not a unix time"),
    (lambda h, b: ({**h, "webhook-signature": ""}, b), "does not match"),
])
def test_a_tampered_or_incomplete_delivery_is_refused_with_the_reason(change, reason) -> None:  # type: ignore[no-untyped-def]
    body = b'{"type":"tenant.online"}'
    headers, body = change(webhook_headers(SPEC_SECRET, "evt-1", body), body)
    with pytest.raises(WebhookVerificationError, match=reason):
        verify(headers, body, secret=SPEC_SECRET)


def test_another_secret_does_not_verify() -> None:
    body = b"{}"
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify(webhook_headers(SPEC_SECRET, "evt-1", body), body, secret=generate_secret())


@pytest.mark.parametrize(("offset", "reason"), [(-301, "too old"), (301, "future")])
def test_timestamps_outside_the_tolerance_are_refused(offset: int, reason: str) -> None:
    body = b"{}"
    headers = webhook_headers(SPEC_SECRET, "evt-1", body, timestamp=int(time.time()) + offset)
    with pytest.raises(WebhookVerificationError, match=reason):
        verify(headers, body, secret=SPEC_SECRET)
    assert verify(headers, body, secret=SPEC_SECRET, tolerance_seconds=400) == "evt-1"


def test_ids_with_a_dot_are_not_signed() -> None:
    # The spec: ids must not contain '.', the separator of the signed content.
    with pytest.raises(ValueError, match="no '.'"):
        webhook_headers(SPEC_SECRET, "evt.1", b"{}")


def test_generated_secrets_are_whsec_base64_of_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first != second and first.startswith("whsec_")
    assert len(decode_secret(first)) == 32
    assert decode_secret(first) == base64.b64decode(first.removeprefix("whsec_"))


@pytest.mark.parametrize(("secret", "reason"), [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"), ("whsec_not base64!", "not base64"), ("whsec_", "empty"),
])
def test_decode_secret_refuses_what_is_not_whsec_base64(secret: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_secret(secret)
