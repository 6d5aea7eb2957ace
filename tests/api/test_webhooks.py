"""The signup webhook: authenticity first, then one user tenant per user, however often it is sent."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from activities.deps import Deps
from tenantflow.catalog import USER_STEP_NAMES
from tenantflow.names import user_project_name
from tenantflow.settings import Settings
from tenantflow.standard_webhooks import sign
from tests.api.conftest import open_api, settled_workflow_count
from tests.conftest import API_TOKEN

URL = "/v1/webhooks/auth/signup"


def signup(user_id: uuid.UUID | str | None, **overrides: Any) -> bytes:
    event: dict[str, Any] = {
        "type": "INSERT", "table": "users", "schema": "auth",
        "record": {"id": str(user_id) if user_id else None, "email": "new.user@example.com",
                   "raw_user_meta_data": {}},
        "old_record": None,
    }
    event.update(overrides)
    return json.dumps(event).encode()


def bearer(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.webhook_secret.get_secret_value()}",
            "Content-Type": "application/json"}


def signed(
    settings: Settings, body: bytes, *, at: float | None = None, secret: str | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, as the auth service would send them."""
    msg_id, timestamp = f"msg_{uuid.uuid4().hex}", int(time.time() if at is None else at)
    key = secret if secret is not None else settings.webhook_secret.get_secret_value()
    return {
        "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{sign(key, msg_id, timestamp, body)}", "Content-Type": "application/json",
    }


async def assert_no_tenant(deps: Deps, user_id: uuid.UUID) -> None:
    assert await deps.store.get_user_project(user_id) is None


# --------------------------------------------------------------------------------- accepted
async def test_bearer_delivery_creates_the_user_tenant_and_its_run(
    anon: httpx.AsyncClient, settings: Settings, deps: Deps, temporal_client: Client
) -> None:
    user_id = uuid.uuid4()
    response = await anon.post(URL, content=signup(user_id), headers=bearer(settings))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["user_id"] == str(user_id) and body["created"] is True
    project = await deps.store.get_user_project(user_id)
    assert project is not None and str(project.id) == body["project_id"]
    assert project.name == user_project_name(user_id) and project.kind == "user"
    assert project.idempotency_key == f"user:{user_id}"
    assert sorted(s.step_name for s in await deps.store.get_steps(project.id)) == sorted(USER_STEP_NAMES)
    description = await temporal_client.get_workflow_handle(body["workflow_id"]).describe()
    assert description.workflow_type == "ProvisionUserWorkflow"
    assert "new.user@example.com" not in response.text


async def test_signed_delivery_is_accepted(anon: httpx.AsyncClient, settings: Settings, deps: Deps) -> None:
    user_id = uuid.uuid4()
    body = signup(user_id)
    response = await anon.post(URL, content=body, headers=signed(settings, body))
    assert response.status_code == 202, response.text
    assert await deps.store.get_user_project(user_id) is not None


async def test_whsec_secrets_are_used_base64_decoded(make_settings: Callable[..., Settings]) -> None:
    raw_key = b"\x00\x01binary key material\xff" * 2
    secret = "whsec_" + base64.b64encode(raw_key).decode()
    settings = make_settings(webhook_secret=secret)
    body = signup(uuid.uuid4())
    async with open_api(settings) as client:
        # Signed with the decoded key, as the Standard Webhooks libraries do.
        headers = signed(settings, body)
        expected = base64.b64encode(
            hmac.new(raw_key, f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body,
                     hashlib.sha256).digest()
        ).decode()
        assert headers["webhook-signature"] == f"v1,{expected}"
        assert (await client.post(URL, content=body, headers=headers)).status_code == 202


async def test_one_good_signature_among_several_is_enough(
    anon: httpx.AsyncClient, settings: Settings
) -> None:
    body = signup(uuid.uuid4())
    headers = signed(settings, body)
    headers["webhook-signature"] = f"v1,{base64.b64encode(b'x' * 32).decode()} {headers['webhook-signature']}"
    assert (await anon.post(URL, content=body, headers=headers)).status_code == 202


# --------------------------------------------------------------------------------- rejected
async def test_unauthenticated_deliveries_are_401_and_start_nothing(
    anon: httpx.AsyncClient, settings: Settings, deps: Deps
) -> None:
    user_id = uuid.uuid4()
    body = signup(user_id)
    good = signed(settings, body)
    cases: dict[str, dict[str, str]] = {
        "no credentials": {"Content-Type": "application/json"},
        "wrong bearer": {"Authorization": "Bearer not-the-secret"},
        "API token instead": {"Authorization": f"Bearer {API_TOKEN}"},
        "basic scheme": {"Authorization": f"Basic {settings.webhook_secret.get_secret_value()}"},
        "bad signature": {**good, "webhook-signature": "v1," + base64.b64encode(b"0" * 32).decode()},
        "other secret": signed(settings, body, secret="another-secret-0123456789"),
        "unknown version": {**good, "webhook-signature": good["webhook-signature"].replace("v1,", "v2,")},
        "no timestamp": {k: v for k, v in good.items() if k != "webhook-timestamp"},
        "bad timestamp": {**good, "webhook-timestamp": "yesterday"},
    }
    for case, headers in cases.items():
        response = await anon.post(URL, content=body, headers=headers)
        assert response.status_code == 401, case
        assert settings.webhook_secret.get_secret_value() not in response.text
    tampered = signup(uuid.uuid4())
    assert (await anon.post(URL, content=tampered, headers=good)).status_code == 401
    await assert_no_tenant(deps, user_id)


@pytest.mark.parametrize(("offset", "reason"), [(-310, "too old"), (310, "future")])
async def test_stale_or_future_timestamps_are_401_with_the_reason(
    anon: httpx.AsyncClient, settings: Settings, deps: Deps, offset: int, reason: str
) -> None:
    user_id = uuid.uuid4()
    body = signup(user_id)
    response = await anon.post(URL, content=body, headers=signed(settings, body, at=time.time() + offset))
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    await assert_no_tenant(deps, user_id)


async def test_authenticity_is_checked_before_the_body_is_parsed(anon: httpx.AsyncClient) -> None:
    response = await anon.post(URL, content=b"{not json", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_an_unconfigured_secret_refuses_every_delivery(make_settings: Callable[..., Settings]) -> None:
    async with open_api(make_settings(webhook_secret="")) as client:
        response = await client.post(URL, content=signup(uuid.uuid4()), headers={"Authorization": "Bearer "})
    assert response.status_code == 503
    assert "no secret configured" in response.json()["detail"]


# ------------------------------------------------------------------------------- bad bodies
@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe"])
async def test_garbage_is_400(anon: httpx.AsyncClient, settings: Settings, body: bytes) -> None:
    response = await anon.post(URL, content=body, headers=bearer(settings))
    assert response.status_code == 400
    assert response.json()["detail"] == "the request body is not valid JSON"


@pytest.mark.parametrize(
    "body",
    [b"[1, 2]", b'"INSERT"', b'{"type": "INSERT"}', signup("not-a-uuid"), signup(None),
     signup(uuid.uuid4(), record=None), signup(uuid.uuid4(), record={"email": "x@example.com"}),
     signup(uuid.uuid4(), record={"id": 42})],
    ids=["array", "string", "no-table", "non-uuid", "null-id", "null-record", "no-id", "int-id"],
)
async def test_malformed_events_are_422_without_echoing_the_record(
    anon: httpx.AsyncClient, settings: Settings, body: bytes
) -> None:
    response = await anon.post(URL, content=body, headers=bearer(settings))
    assert response.status_code == 422, response.text
    assert "example.com" not in response.text


@pytest.mark.parametrize(
    "overrides",
    [{"type": "UPDATE"}, {"schema": "public"}, {"table": "identities"}],
    ids=["update", "other-schema", "other-table"],
)
async def test_other_events_are_ignored(
    anon: httpx.AsyncClient, settings: Settings, deps: Deps, overrides: dict[str, str]
) -> None:
    user_id = uuid.uuid4()
    response = await anon.post(URL, content=signup(user_id, **overrides), headers=bearer(settings))
    assert response.status_code == 200
    assert response.json()["ignored"] is True
    assert "only INSERT and DELETE on auth.users" in response.json()["reason"]
    await assert_no_tenant(deps, user_id)


async def test_a_deleted_user_without_a_tenant_is_ignored(
    anon: httpx.AsyncClient, settings: Settings, deps: Deps
) -> None:
    user_id = uuid.uuid4()
    event = {"type": "DELETE", "table": "users", "schema": "auth", "record": None,
             "old_record": {"id": str(user_id)}}
    response = await anon.post(URL, json=event, headers=bearer(settings))
    assert response.status_code == 200, response.text
    assert response.json() == {"ignored": True, "reason": "this user has no tenant to delete"}
    # A DELETE must name the user in old_record (Supabase's shape), else it is malformed.
    event["old_record"] = None
    assert (await anon.post(URL, json=event, headers=bearer(settings))).status_code == 422


# ------------------------------------------------------------------------------ redelivery
async def test_twenty_concurrent_redeliveries_make_one_tenant_and_one_run(
    anon: httpx.AsyncClient, settings: Settings, deps: Deps, temporal_client: Client
) -> None:
    user_id = uuid.uuid4()
    body = signup(user_id)
    # Half signed (each with its own webhook-id, like separate delivery attempts), half bearer.
    responses = await asyncio.gather(
        *(anon.post(URL, content=body, headers=signed(settings, body) if i % 2 else bearer(settings))
          for i in range(20))
    )
    assert [r.status_code for r in responses] == [202] * 20
    assert sum(r.json()["created"] for r in responses) == 1
    assert len({r.json()["project_id"] for r in responses}) == 1
    assert await settled_workflow_count(temporal_client, user_project_name(user_id)) == 1

    later = await anon.post(URL, content=body, headers=bearer(settings))
    assert later.status_code == 202 and later.json()["created"] is False


async def test_webhook_health_needs_no_credentials(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/v1/webhooks/auth/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "webhook": "auth"}
