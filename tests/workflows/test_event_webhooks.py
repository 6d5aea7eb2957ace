"""Completion webhooks end to end on the real Temporal server and the real mirror: a tenant's run
announces ``online``, ``failed`` and ``deleted`` to a real receiver on a loopback port, signed, once
per event id, retried after a 500, never held up by a receiver that is down, and not at all when no
receiver is configured. Step bodies are scripted (``tests.scripted``) except in the deletion test,
which runs the real worker of ``worker.py``."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from activities.deps import Deps
from activities.notify import NotifyActivities
from activities.project import ProjectActivities
from tenantflow.catalog import PROJECT_STEP_NAMES, ProjectKind
from tenantflow.contracts import RetryRequest
from tenantflow.errors import ServiceRejected
from tenantflow.settings import Settings
from tenantflow.temporal import start_provisioning
from tests.api.conftest import AUTH, open_api
from tests.conftest import eventually
from tests.e2e.history import patches, scheduled_activities
from tests.e2e.test_project_provisioning import wait_status
from tests.scripted import ScriptedSteps
from tests.webhook_receiver import SECRET, Delivery, Receiver, dead_url
from tests.workflows.replay import keep_as_fixture
from worker import WORKFLOWS
from workflows.base import EVENT_WEBHOOKS_PATCH
from workflows.events import DeliverEventWorkflow
from workflows.project import ProvisionProjectWorkflow


async def replays(scenario: str, history: WorkflowHistory) -> None:
    """A fresh history replays on today's code; with ``TENANTFLOW_RECORD_HISTORIES`` set it may
    become the scenario's fixture (``tests.workflows.replay.keep_as_fixture``)."""
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
    keep_as_fixture(scenario, history)


@contextlib.asynccontextmanager
async def scripted_worker(settings: Settings, client: Client) -> AsyncIterator[tuple[Deps, ScriptedSteps]]:
    """A worker on ``settings``: every workflow, the mirror and delivery activities, scripted steps."""
    deps = Deps.from_settings(settings)
    script = ScriptedSteps(deps, skip_all=True)
    mirror = ProjectActivities(deps)
    worker = Worker(
        client, task_queue=settings.task_queue, workflows=WORKFLOWS,
        activities=[mirror.begin_provisioning, mirror.set_project_status, mirror.mark_step,
                    NotifyActivities(deps).deliver_event, *script.activities()],
    )
    try:
        async with worker:
            yield deps, script
    finally:
        script.release_all()
        await deps.aclose()


async def provision(
    deps: Deps, client: Client, settings: Settings, name: str
) -> tuple[str, WorkflowHandle[Any, Any]]:
    """Create the tenant and start its run the way the API does (receivers from settings)."""
    created = await deps.store.create_project(name=name, kind=ProjectKind.PROJECT, steps=PROJECT_STEP_NAMES)
    return str(created.project.id), await start_provisioning(client, settings, created.project)


def taken_once_each(receiver: Receiver) -> list[Delivery]:
    """The events the receiver took (2xx), after checking it took each event id exactly once."""
    taken = receiver.taken()
    assert all(n == 1 for n in Counter(d.id for d in taken).values()), [d.id for d in taken]
    return taken


@pytest.fixture
def hooked(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings whose runs announce to ``urls``."""
    return lambda *urls: make_settings(event_webhook_urls=list(urls), event_webhook_secret=SECRET)


async def test_online_is_announced_once_signed_and_retried_after_a_500_under_the_same_id(
    hooked: Callable[..., Settings], temporal_client: Client, tenant_name: Any
) -> None:
    with Receiver(fail_first=1) as receiver:
        settings = hooked(receiver.url)
        name = tenant_name()
        async with scripted_worker(settings, temporal_client) as (deps, _):
            project_id, handle = await provision(deps, temporal_client, settings, name)
            assert (await handle.result())["status"] == "online"
            [event] = await eventually(lambda: taken_once_each(receiver), timeout=30)
            delivery_run = temporal_client.get_workflow_handle_for(DeliverEventWorkflow.run, event.id)
            report = await delivery_run.result()
            await replays("project-online-announced", await handle.fetch_history())
            await replays("event-delivered-after-500", await delivery_run.fetch_history())
        first, second = receiver.deliveries  # nothing more came once the delivery run had ended
    assert [first.answered, second.answered] == [500, 204]
    # The run's second status write (provisioning, then online) is the event; every attempt carries its id.
    assert first.id == second.id == event.id == f"{handle.id}-event-2"
    assert first.body == second.body and first.verified() and second.verified()
    body = event.json()
    assert body["type"] == "tenant.online" and body["id"] == event.id
    assert body["data"] == {"project_id": project_id, "name": name, "kind": "project", "status": "online",
                            "run_kind": "provision", "workflow_id": handle.id}
    assert report.event_id == event.id and report.delivered[0].attempt == 2


async def test_failed_names_the_step_and_error_and_the_retry_then_announces_online(
    hooked: Callable[..., Settings], temporal_client: Client, tenant_name: Any
) -> None:
    with Receiver() as receiver:
        settings = hooked(receiver.url)
        async with scripted_worker(settings, temporal_client) as (deps, script):
            script.fail["generate_api_keys"] = ServiceRejected("key service quota exceeded")
            name = tenant_name()
            project_id, handle = await provision(deps, temporal_client, settings, name)
            [failed] = await eventually(lambda: taken_once_each(receiver), timeout=30)
            assert failed.json()["type"] == "tenant.failed"
            assert failed.json()["data"] == {
                "project_id": project_id, "name": name, "kind": "project", "status": "failed",
                "run_kind": "provision", "workflow_id": handle.id,
                "failed_step": "generate_api_keys", "error": "key service quota exceeded",
            }
            del script.fail["generate_api_keys"]
            await handle.signal(ProvisionProjectWorkflow.retry, RetryRequest(reason="quota raised"))
            assert (await handle.result())["status"] == "online"
            taken = await eventually(lambda: len(taken_once_each(receiver)) == 2 and receiver.taken())
            history = await handle.fetch_history()
    assert [d.json()["type"] for d in taken] == ["tenant.failed", "tenant.online"]
    assert taken[0].id != taken[1].id and all(d.verified() for d in taken)
    assert "failed_step" not in taken[1].json()["data"]
    # The run's history, events included, replays on today's code: the event ids and times are
    # derived deterministically in the workflow.
    await replays("project-retried-announced", history)


async def test_a_failed_event_still_being_retried_survives_the_cancel_of_its_run(
    hooked: Callable[..., Settings], temporal_client: Client, tenant_name: Any
) -> None:
    # A deletion cancels a failed run (stop_provisioning) while its tenant.failed may still be retried.
    with Receiver(fail_first=2) as receiver:
        settings = hooked(receiver.url)
        async with scripted_worker(settings, temporal_client) as (deps, script):
            script.fail["create_tenant_schema"] = ServiceRejected("schema clash")
            _, handle = await provision(deps, temporal_client, settings, tenant_name())
            first = (await eventually(lambda: receiver.deliveries, timeout=30))[0]
            assert first.answered == 500
            await handle.cancel()
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
            [taken] = await eventually(lambda: taken_once_each(receiver), timeout=30)
    assert taken.id == first.id and taken.json()["type"] == "tenant.failed"
    assert [d.answered for d in receiver.deliveries] == [500, 500, 204]


async def test_a_receiver_that_answers_410_gets_one_request_and_its_delivery_run_fails(
    hooked: Callable[..., Settings], temporal_client: Client, tenant_name: Any
) -> None:
    with Receiver(status=410) as receiver:
        settings = hooked(receiver.url)
        async with scripted_worker(settings, temporal_client) as (deps, _):
            _, handle = await provision(deps, temporal_client, settings, tenant_name())
            assert (await handle.result())["status"] == "online"
            [refused] = await eventually(lambda: receiver.deliveries, timeout=30)
            delivery_run = temporal_client.get_workflow_handle(refused.id)
            with pytest.raises(WorkflowFailureError) as failure:
                await delivery_run.result()
            await replays("event-refused-410", await delivery_run.fetch_history())
        assert len(receiver.deliveries) == 1
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "EventUndelivered"
    assert "not delivered to 1 of 1 receivers" in cause.message and "HTTP 410" in cause.message


async def test_without_receivers_the_run_has_no_delivery_in_its_history(
    make_settings: Callable[..., Settings], temporal_client: Client, tenant_name: Any
) -> None:
    settings = make_settings()
    async with scripted_worker(settings, temporal_client) as (deps, _):
        _, handle = await provision(deps, temporal_client, settings, tenant_name())
        assert (await handle.result())["status"] == "online"
        history = await handle.fetch_history()
    kinds = {event.event_type for event in history.events}
    activities = scheduled_activities(history.events)
    assert EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED not in kinds
    assert EVENT_WEBHOOKS_PATCH not in patches(history.events)  # not even the patch marker
    assert "deliver_event" not in activities and "set_project_status" in activities
    # So, as to webhooks, this history is one recorded before completion webhooks existed (whose
    # inputs have no receivers): it replays on today's code.
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)


async def test_a_dead_receiver_holds_up_neither_the_other_receiver_nor_the_run(
    hooked: Callable[..., Settings], temporal_client: Client, tenant_name: Any
) -> None:
    with Receiver() as receiver:
        down = dead_url()
        settings = hooked(down, receiver.url)
        async with scripted_worker(settings, temporal_client) as (deps, _):
            _, handle = await provision(deps, temporal_client, settings, tenant_name())
            assert (await handle.result())["status"] == "online"  # returned while a receiver is down
            [event] = await eventually(lambda: taken_once_each(receiver), timeout=30)
            delivery_run = temporal_client.get_workflow_handle(event.id)

            async def retrying_the_dead_one() -> Any:
                description = await delivery_run.describe()
                pending = description.raw_description.pending_activities
                return description.status == WorkflowExecutionStatus.RUNNING and len(pending) == 1 and \
                    pending[0].attempt >= 2 and pending[0]

            pending = await eventually(retrying_the_dead_one, timeout=30)
            assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
            await delivery_run.terminate("test over")
    assert "ConnectError" in pending.last_failure.message or "unreachable" in pending.last_failure.message


async def test_deleting_a_tenant_announces_deleted_from_the_real_worker(
    hooked: Callable[..., Settings], run_worker: Any, tenant_name: Any
) -> None:
    with Receiver() as receiver:
        settings = hooked(receiver.url)
        name = tenant_name()
        async with run_worker(settings), open_api(settings, headers=AUTH) as api:
            created = (await api.post("/v1/projects", json={"name": name})).json()
            await wait_status(api, created["id"], "online")
            assert (await api.delete(f"/v1/projects/{name}")).status_code == 202
            await wait_status(api, created["id"], "deleted")
            taken = await eventually(lambda: len(taken_once_each(receiver)) == 2 and receiver.taken())
    online, deleted = (d.json() for d in taken)
    assert online["type"] == "tenant.online" and online["data"]["workflow_id"] == created["workflow_id"]
    assert deleted["type"] == "tenant.deleted"
    assert deleted["data"]["status"] == "deleted" and deleted["data"]["run_kind"] == "deprovision"
    assert deleted["data"]["workflow_id"].startswith(f"deprovision-project-{name}-")
    assert deleted["data"]["project_id"] == created["id"]
    assert deleted["id"].startswith(deleted["data"]["workflow_id"] + "-event-")
    assert all(d.verified() for d in taken)
