"""Push updates: the Server-Sent Events stream of a tenant and the long poll, against the app served
by uvicorn on a real port (a stream must arrive while the run goes on, not once it has ended), a
real worker with scripted steps, and the mirror's triggers in the real Postgres."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api import events as events_module
from api.main import create_app
from standins.server import ThreadedServer
from tenantflow.catalog import PROJECT_STEP_NAMES, STEP_NEEDS, StepStatus
from tenantflow.db import make_engine
from tenantflow.settings import Settings
from tests.api.conftest import AUTH, ScriptedSteps
from tests.conftest import eventually


@dataclass
class Event:
    kind: str
    id: int | None
    data: dict[str, Any]


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API served over HTTP (so responses stream), with the API token."""
    with ThreadedServer(create_app(settings)) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30) as client:
            yield client


async def stream(
    client: httpx.AsyncClient, ref: str, *, last_event_id: int | None = None, limit: int | None = None
) -> list[Event]:
    """Read the tenant's event stream until it closes (or ``limit`` events, then hang up)."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    seen: list[Event] = []
    fields: dict[str, str] = {}
    async with client.stream("GET", f"/v1/projects/{ref}/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue
            if line:
                key, _, value = line.partition(": ")
                fields[key] = value
                continue
            if fields:
                seen.append(Event(fields["event"], int(fields["id"]) if "id" in fields else None,
                                  json.loads(fields["data"])))
                fields = {}
                if limit is not None and len(seen) == limit:
                    break
    return seen


def step_story(events: list[Event]) -> dict[str, list[str]]:
    """Each step's statuses in the order the stream told them, repeats of a status folded."""
    story: dict[str, list[str]] = {}
    for e in events:
        if e.kind == "step":
            statuses = story.setdefault(e.data["step"], [])
            if not statuses or statuses[-1] != e.data["status"]:
                statuses.append(e.data["status"])
    return story


@pytest.fixture
def notify_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams and long polls no longer re-read on their own: only a NOTIFY can wake them."""
    monkeypatch.setattr(events_module, "POLL_INTERVAL", 3600.0)


async def test_a_client_receives_every_step_event_of_a_run_in_order_as_it_happens(
    served: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str], notify_only: None
) -> None:
    gate = script.hold("create_tenant_schema")
    project = (await served.post("/v1/projects", json={"name": tenant_name()})).json()
    reading = asyncio.create_task(stream(served, project["id"]))
    await eventually(lambda: script.calls["create_tenant_schema"] == 1)
    assert not reading.done(), "the stream must stay open while the run goes on"
    gate.set()
    events = await asyncio.wait_for(reading, 30)

    ids = [e.id for e in events if e.kind != "end"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[-1] == Event("end", None, {"project_id": project["id"], "status": "online"})
    statuses = [e.data["status"] for e in events if e.kind == "status"]
    assert statuses == ["pending", "provisioning", "online"]
    # Every step: created pending (in catalog order), running, then skipped (scripted); none
    # started before the steps it needs were done.
    story = step_story(events)
    assert list(story) == list(PROJECT_STEP_NAMES)
    assert all(s == ["pending", "running", "skipped"] for s in story.values()), story
    position: dict[tuple[str, str], int] = {}  # where each step first had each status
    for i, e in enumerate(events):
        if e.kind == "step":
            position.setdefault((e.data["step"], e.data["status"]), i)
    for step, needs in STEP_NEEDS.items():
        for need in needs:
            assert position[(need, "skipped")] < position[(step, "running")], (step, need)
    # What the stream said last of each step is what the API says now.
    rows = {s["name"]: s for s in (await served.get(f"/v1/projects/{project['id']}/steps")).json()["steps"]}
    last = {e.data["step"]: e.data for e in events if e.kind == "step"}
    for name, data in last.items():
        assert (data["status"], data["retry_count"]) == (rows[name]["status"], rows[name]["retry_count"])

    # A client that connects after the end gets the same history (by name too), then the end.
    assert await stream(served, project["name"]) == events


async def test_a_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(
    served: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str]
) -> None:
    gate = script.hold("register_auth_service")
    pid = (await served.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    await eventually(lambda: script.calls["register_auth_service"] == 1)
    first = await stream(served, pid, limit=5)  # then the client hangs up mid-run
    assert len(first) == 5 and all(e.kind != "end" for e in first)

    gate.set()
    rest = await stream(served, pid, last_event_id=first[-1].id)
    assert await stream(served, pid) == first + rest
    # The query parameter form resumes the same way (for clients that cannot set headers).
    response = await served.get(f"/v1/projects/{pid}/events", params={"last_event_id": rest[-3].id})
    assert response.text.count("event: ") == 2 and "event: end" in response.text


async def test_a_failed_run_ends_the_stream_with_its_error_and_a_retry_continues_it(
    served: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str]
) -> None:
    script.fail_once.add("generate_api_keys")
    pid = (await served.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    failed = await stream(served, pid)
    assert failed[-1].data["status"] == "failed"
    keys = [e.data for e in failed if e.kind == "step" and e.data["step"] == "generate_api_keys"]
    assert keys[-1]["status"] == StepStatus.FAILED and keys[-1]["error_message"] == "scripted failure"
    assert [e.data["status"] for e in failed if e.kind == "status"][-1] == "failed"

    assert (await served.post(f"/v1/projects/{pid}/retry")).status_code == 202
    resumed = await stream(served, pid, last_event_id=failed[-2].id)
    assert resumed[-1].data["status"] == "online"
    story = step_story(resumed)
    assert story["generate_api_keys"] == ["pending", "running", "skipped"]
    assert "create_tenant_database" not in story  # done before: nothing new to tell
    assert [e.data["status"] for e in resumed if e.kind == "status"] == ["provisioning", "online"]


async def test_the_long_poll_answers_when_the_status_is_reached(
    served: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str], notify_only: None
) -> None:
    gate = script.hold("verify_services")
    pid = (await served.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    await eventually(lambda: script.calls["verify_services"] == 1)

    waiting = asyncio.create_task(served.get(f"/v1/projects/{pid}", params={"wait_for": "online"}))
    await asyncio.sleep(0.5)
    assert not waiting.done(), "the long poll must wait while the run goes on"
    gate.set()
    answer = (await asyncio.wait_for(waiting, 20)).json()
    assert answer["status"] == "online"
    assert {s["status"] for s in answer["steps"]} == {"skipped"}


async def test_the_long_poll_answers_at_its_timeout_and_on_a_settled_status(
    served: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str]
) -> None:
    gate = script.hold("create_tenant_database")
    pid = (await served.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    await eventually(lambda: script.calls["create_tenant_database"] == 1)
    answer = await served.get(f"/v1/projects/{pid}", params={"wait_for": "online", "timeout": 0.5})
    assert answer.status_code == 200 and answer.json()["status"] == "provisioning"

    script.fail_once.add("register_storage_service")
    gate.set()
    # Waiting for online ends at failed: the run cannot leave it without a person.
    answer = await served.get(f"/v1/projects/{pid}", params={"wait_for": "online", "timeout": 30})
    assert answer.json()["status"] == "failed"


@pytest.mark.parametrize(
    ("params", "headers", "where"),
    [
        ({"wait_for": "ready"}, {}, "wait_for"),
        ({"wait_for": "online", "timeout": 0}, {}, "timeout"),
        ({"wait_for": "online", "timeout": 61}, {}, "timeout"),
    ],
)
async def test_invalid_long_poll_parameters_are_422(
    served: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str],
    params: dict[str, Any], headers: dict[str, str], where: str,
) -> None:
    pid = (await served.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    response = await served.get(f"/v1/projects/{pid}", params=params, headers=headers)
    assert response.status_code == 422 and where in response.text


@pytest.mark.parametrize(
    ("params", "headers"),
    [({}, {"Last-Event-ID": "abc"}), ({}, {"Last-Event-ID": str(2**63)}), ({"last_event_id": "-1"}, {})],
)
async def test_invalid_resume_ids_are_422(
    served: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str],
    params: dict[str, Any], headers: dict[str, str],
) -> None:
    pid = (await served.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    response = await served.get(f"/v1/projects/{pid}/events", params=params, headers=headers)
    assert response.status_code == 422, response.text


async def test_the_stream_needs_the_api_token_and_a_known_tenant(served: httpx.AsyncClient) -> None:
    assert (await served.get("/v1/projects/nobody/events")).status_code == 404
    assert (await served.get("/v1/projects/nobody/events", headers={"Authorization": ""})).status_code == 401


async def test_streams_go_on_after_the_listening_connection_is_killed(
    served: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str], notify_only: None,
    settings: Settings,
) -> None:
    gate = script.hold("generate_api_keys")
    pid = (await served.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    await eventually(lambda: script.calls["generate_api_keys"] == 1)
    reading = asyncio.create_task(stream(served, pid))
    await asyncio.sleep(0.3)

    engine = make_engine(settings.database_url.get_secret_value())
    try:
        async with engine.begin() as conn:
            killed = (await conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query = 'LISTEN tenantflow_events'"
            ))).scalar_one()
    finally:
        await engine.dispose()
    assert killed >= 1
    gate.set()  # the rest of the run happens while (or after) the listener reconnects
    events = await asyncio.wait_for(reading, 30)
    assert events[-1].data["status"] == "online"
    assert step_story(events)["verify_services"] == ["pending", "running", "skipped"]
