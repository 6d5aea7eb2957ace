"""The ``deliver_event`` activity against a real receiver on a loopback port: what it sends (body,
Standard Webhooks headers, a signature that verifies) and what each answer of the receiver means
(delivered, retried by Temporal, or refused for good)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deps import Deps
from activities.notify import NotifyActivities
from tenantflow.contracts import DeliveryInput, TenantEvent, TenantEventData
from tenantflow.settings import Settings
from tests.conftest import API_TOKEN, ENCRYPTION_KEYS
from tests.webhook_receiver import SECRET, Receiver, dead_url

ONLINE = TenantEvent(
    id="provision-project-acme-0b6c-event-3", type="tenant.online", timestamp="2026-11-23T21:00:00+00:00",
    data=TenantEventData(project_id="0b6c", name="acme", kind="project", status="online",
                         run_kind="provision", workflow_id="provision-project-acme-0b6c"),
)
FAILED = TenantEvent(
    id="provision-project-acme-0b6c-event-2", type="tenant.failed", timestamp="2026-11-23T20:59:00+00:00",
    data=TenantEventData(project_id="0b6c", name="acme", kind="project", status="failed",
                         run_kind="provision", workflow_id="provision-project-acme-0b6c",
                         failed_step="register_storage_service", error="storage rejected ...: HTTP 400"),
)


def settings_for(*urls: str) -> Settings:
    # The activity touches no database: these settings only have to be valid.
    return Settings(environment="test", database_url="postgresql://u:p@127.0.0.1:1/none",
                    tenant_pg_admin_url="postgresql://u:p@127.0.0.1:1/none", api_token=API_TOKEN,
                    encryption_keys=ENCRYPTION_KEYS, event_webhook_urls=list(urls),
                    event_webhook_secret=SECRET)


async def deliver(event: TenantEvent, url: str, *, configured: tuple[str, ...] | None = None) -> object:
    """Run the activity once (as Temporal's first attempt) with ``configured`` as the worker's URLs."""
    deps = Deps.from_settings(settings_for(*(configured if configured is not None else (url,))))
    try:
        activity = NotifyActivities(deps).deliver_event
        return await ActivityEnvironment().run(activity, DeliveryInput(event, url))
    finally:
        await deps.aclose()


async def refusal(event: TenantEvent, url: str, **kwargs: object) -> ApplicationError:
    with pytest.raises(ApplicationError) as failure:
        await deliver(event, url, **kwargs)  # type: ignore[arg-type]
    return failure.value


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    with Receiver() as r:
        yield r


async def test_a_2xx_delivers_one_signed_post_with_the_event(receiver: Receiver) -> None:
    before = int(time.time())
    result = await deliver(ONLINE, receiver.url)
    [got] = receiver.deliveries
    assert result.status_code == 204 and result.url == receiver.url and result.attempt == 1  # type: ignore[attr-defined]
    assert got.id == ONLINE.id and got.verified()
    assert before <= int(got.headers["webhook-timestamp"]) <= time.time()
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {
        "type": "tenant.online", "id": ONLINE.id, "timestamp": "2026-11-23T21:00:00+00:00",
        "data": {"project_id": "0b6c", "name": "acme", "kind": "project", "status": "online",
                 "run_kind": "provision", "workflow_id": "provision-project-acme-0b6c"},
    }
    assert SECRET.removeprefix("whsec_") not in got.body.decode() + str(got.headers)


async def test_a_failed_event_names_the_step_and_its_error(receiver: Receiver) -> None:
    await deliver(FAILED, receiver.url)
    data = receiver.deliveries[0].json()["data"]
    assert data["failed_step"] == "register_storage_service"
    assert data["error"] == "storage rejected ...: HTTP 400"


async def test_a_500_is_retryable_and_every_attempt_sends_the_same_id_and_body() -> None:
    with Receiver(fail_first=2) as receiver:
        for _ in range(2):
            failure = await refusal(ONLINE, receiver.url)
            assert not failure.non_retryable and failure.type == "ServiceUnavailable"
            assert failure.details[0]["status"] == 500 and failure.details[0]["event_id"] == ONLINE.id
        await deliver(ONLINE, receiver.url)
        first, second, third = receiver.deliveries
    assert [d.answered for d in (first, second, third)] == [500, 500, 204]
    assert first.id == second.id == third.id == ONLINE.id
    assert first.body == second.body == third.body
    assert all(d.verified() for d in (first, second, third))


@pytest.mark.parametrize("status", [408, 409, 425, 429, 502, 503, 307])
async def test_later_statuses_and_redirects_are_retried(status: int) -> None:
    with Receiver(status=status, answer_headers={"location": "http://127.0.0.1:1/elsewhere"}) as receiver:
        failure = await refusal(ONLINE, receiver.url)
        assert len(receiver.deliveries) == 1  # a redirect is not followed
    assert not failure.non_retryable and failure.details[0]["status"] == status


async def test_a_retry_after_is_the_next_attempts_delay() -> None:
    with Receiver(status=503, answer_headers={"retry-after": "7"}) as receiver:
        failure = await refusal(ONLINE, receiver.url)
    assert not failure.non_retryable and failure.next_retry_delay == timedelta(seconds=7)


@pytest.mark.parametrize(("status", "kind"), [(410, "ServiceRejected"), (400, "ServiceRejected"),
                                              (404, "ServiceRejected"), (401, "ConfigurationError")])
async def test_a_receiver_that_refuses_the_event_is_not_retried(status: int, kind: str) -> None:
    with Receiver(status=status) as receiver:
        failure = await refusal(ONLINE, receiver.url)
    assert failure.non_retryable and failure.type == kind
    assert f"HTTP {status}" in failure.message and receiver.url in failure.details[0]["url"]


async def test_a_receiver_that_is_down_is_retried() -> None:
    failure = await refusal(ONLINE, dead_url())
    assert not failure.non_retryable and failure.details[0]["error"] == "ConnectError"


async def test_a_url_the_worker_is_not_configured_for_is_never_sent_to(receiver: Receiver) -> None:
    failure = await refusal(ONLINE, receiver.url, configured=("https://other.example/hook",))
    assert failure.non_retryable and "not in this worker's event_webhook_urls" in failure.message
    assert receiver.deliveries == []
