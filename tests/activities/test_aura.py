"""The Aura backend against the Aura API emulator, served over real HTTP on a loopback port.

Client: token caching and refresh, a 429 with Retry-After waited out, everything else raised at once
(outages retryable by Temporal, 4xx and refused credentials not).
Backend (run in ``ActivityEnvironment``): create + wait online, exactly one instance whatever
point of ``create`` a crash interrupts, secrets only in the credential store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deps import Deps
from activities.graph import GraphActivities
from activities.graph.aura import AuraGraphBackend, http_uri, instance_name
from activities.graph.aura_api import AuraClient
from activities.graph.backend import GRAPH_PASSWORD
from activities.mirror import describe_error
from devstack.ports import free_port
from standins.aura_emulator import AuraEmulator, EmulatorConfig
from standins.server import ThreadedServer
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.contracts import StepInput
from tenantflow.errors import (
    ConfigurationError,
    GraphDatabaseFailed,
    ServiceRejected,
    ServiceUnavailable,
    StillWaiting,
    TransientError,
    VerificationFailed,
)
from tenantflow.models import Project
from tenantflow.settings import Settings

DEFAULTS = EmulatorConfig(polls_until_running=3, polls_until_gone=2)
TENANT = DEFAULTS.tenant_ids[0]


class WorkerCrash(BaseException):  # noqa: N818 - stands for the process dying, not an error
    """Passes every ``except Exception``, like a killed worker."""


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def aura_server() -> Iterator[tuple[AuraEmulator, ThreadedServer]]:
    emulator = AuraEmulator(DEFAULTS)
    with ThreadedServer(emulator.app) as server:
        yield emulator, server


@pytest.fixture
def emulator(aura_server: tuple[AuraEmulator, ThreadedServer]) -> AuraEmulator:
    emu, server = aura_server
    emu.reset()
    emu.configure(**dataclasses.asdict(DEFAULTS))
    emu.url = server.url  # type: ignore[attr-defined]
    return emu


@pytest.fixture
def aura_settings(make_settings: Callable[..., Settings], emulator: AuraEmulator) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            graph_backend="aura", aura_api_url=emulator.url,  # type: ignore[attr-defined]
            aura_client_id=DEFAULTS.client_id, aura_client_secret=DEFAULTS.client_secret,
            aura_tenant_id=TENANT, aura_poll_interval_seconds=0.05, aura_poll_timeout_seconds=10.0,
            aura_request_timeout_seconds=2.0,
        )
        return make_settings(**{**values, **overrides})

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def make_backend(
    aura_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., AuraGraphBackend]]:
    """``make_backend(**settings_overrides)``: a backend on the emulator; closed after."""
    opened: list[tuple[AuraGraphBackend, Deps]] = []

    def make(**overrides: Any) -> AuraGraphBackend:
        settings = aura_settings(**overrides)
        deps = Deps.from_settings(settings)
        backend = AuraGraphBackend(deps, client=AuraClient(settings))
        opened.append((backend, deps))
        return backend

    yield make
    for backend, deps in opened:
        await backend.aclose()
        await deps.aclose()


@pytest.fixture
def backend(make_backend: Callable[..., AuraGraphBackend]) -> AuraGraphBackend:
    return make_backend()


@pytest_asyncio.fixture(loop_scope="session")
async def client(aura_settings: Callable[..., Settings]) -> AsyncIterator[AuraClient]:
    c = AuraClient(aura_settings())
    yield c
    await c.aclose()


async def new_project(backend: AuraGraphBackend, tenant_name: Callable[[], str]) -> Project:
    created = await backend.deps.store.create_project(
        name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES
    )
    return created.project


async def reload(backend: AuraGraphBackend, project: Project) -> Project:
    """The row as the next activity attempt would read it."""
    fresh = await backend.deps.store.get_project(project.id)
    assert fresh is not None
    return fresh


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def statuses(emulator: AuraEmulator, method: str, path: str) -> list[int]:
    return [r["status"] for r in emulator.requests() if r["method"] == method and r["path"] == path]


# -------------------------------------------------------------------------------------- client
async def test_token_is_fetched_once_and_reused(client: AuraClient, emulator: AuraEmulator) -> None:
    for _ in range(3):
        assert await client.list_instances(TENANT) == []
    assert emulator.count("POST", "/oauth/token") == 1
    assert emulator.count("GET", "/v1/instances") == 3


async def test_token_is_refreshed_shortly_before_it_expires(
    client: AuraClient, emulator: AuraEmulator
) -> None:
    emulator.configure(token_ttl_seconds=1.0)
    await client.list_instances(TENANT)
    await asyncio.sleep(0.95)  # inside the last 10 % of the token's life: refreshed proactively
    await client.list_instances(TENANT)
    assert emulator.count("POST", "/oauth/token") == 2
    assert 403 not in statuses(emulator, "GET", "/v1/instances")


async def test_expired_token_gets_403_and_is_refreshed_once(
    client: AuraClient, emulator: AuraEmulator
) -> None:
    await client.list_instances(TENANT)
    emulator.expire_tokens()
    await client.list_instances(TENANT)
    assert statuses(emulator, "GET", "/v1/instances") == [200, 403, 200]
    assert emulator.count("POST", "/oauth/token") == 2


async def test_rejected_credentials_are_permanent_and_never_echo_the_secret(
    aura_settings: Callable[..., Settings], emulator: AuraEmulator
) -> None:
    wrong = "wrong-secret-that-must-not-leak"
    c = AuraClient(aura_settings(aura_client_secret=wrong))
    try:
        with pytest.raises(ConfigurationError) as caught:
            await c.list_instances(TENANT)
    finally:
        await c.aclose()
    err = caught.value
    assert err.details["status"] == 401 and err.details["service"] == "aura"
    assert "Invalid client credentials" in err.message
    assert wrong not in repr((err.message, err.details))
    assert emulator.count("POST", "/oauth/token") == 1  # 4xx: not retried
    _, _, retryable = describe_error(err, attempt=1)
    assert retryable is False


async def test_429_waits_for_retry_after(client: AuraClient, emulator: AuraEmulator) -> None:
    await client.list_instances(TENANT)  # token first, so only the list is throttled
    emulator.inject(status=429, retry_after=1, count=1, method="GET", path="/v1/instances")
    started = time.monotonic()
    assert await client.list_instances(TENANT) == []
    assert time.monotonic() - started >= 1.0
    assert statuses(emulator, "GET", "/v1/instances") == [200, 429, 200]


async def test_429_on_create_is_retried_without_a_duplicate(
    client: AuraClient, emulator: AuraEmulator
) -> None:
    emulator.inject(status=429, retry_after=0, count=2, method="POST", path="/v1/instances")
    created = await client.create_instance({
        "name": "tf-throttled", "region": "europe-west1", "memory": "1GB", "type": "free-db",
        "tenant_id": TENANT, "cloud_provider": "gcp",
    })
    assert created["status"] == "creating"
    assert statuses(emulator, "POST", "/v1/instances") == [429, 429, 202]
    assert len(emulator.live_instances()) == 1


async def test_5xx_and_slow_answers_are_left_to_temporal(client: AuraClient, emulator: AuraEmulator) -> None:
    """Not retried inside the activity: each raises a retryable error at once; the next attempt
    (Temporal's retry) succeeds."""
    await client.list_instances(TENANT)  # token first
    emulator.inject(status=500, count=1, method="GET")
    with pytest.raises(ServiceUnavailable) as caught:
        await client.list_instances(TENANT)
    assert caught.value.details["status"] == 500
    assert describe_error(caught.value, attempt=1)[2] is True
    emulator.inject(delay=2.5, count=1, method="GET")  # longer than the 2 s request timeout
    with pytest.raises(ServiceUnavailable) as caught:
        await client.list_instances(TENANT)
    assert caught.value.details["error"] == "ReadTimeout" and caught.value.details["status"] is None
    assert await client.list_instances(TENANT) == []
    assert emulator.count("GET", "/v1/instances") == 4  # one request per call


async def test_5xx_that_persists_becomes_a_retryable_error(
    client: AuraClient, emulator: AuraEmulator
) -> None:
    await client.list_instances(TENANT)
    emulator.inject(status=503, count=100, method="GET", message="maintenance")
    with pytest.raises(ServiceUnavailable) as caught:
        await client.list_instances(TENANT)
    assert isinstance(caught.value, TransientError)
    assert caught.value.details["status"] == 503
    assert "maintenance" in caught.value.message
    assert emulator.count("GET", "/v1/instances") == 1 + 1  # not repeated: Temporal retries


async def test_unreachable_aura_is_retryable(aura_settings: Callable[..., Settings]) -> None:
    c = AuraClient(aura_settings(aura_api_url=f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            await c.get_instance("abc")
    finally:
        await c.aclose()
    assert caught.value.details["error"] == "ConnectError"
    assert describe_error(caught.value, attempt=1)[2] is True


async def test_create_is_not_repeated_after_a_5xx(client: AuraClient, emulator: AuraEmulator) -> None:
    """Aura may have created the instance before failing: the POST must not be sent again."""
    emulator.inject(status=502, after=True, count=1, method="POST", path="/v1/instances")
    with pytest.raises(ServiceUnavailable):
        await client.create_instance({
            "name": "tf-lost-answer", "region": "europe-west1", "memory": "1GB", "type": "free-db",
            "tenant_id": TENANT, "cloud_provider": "gcp",
        })
    assert emulator.count("POST", "/v1/instances") == 1
    assert len(emulator.live_instances("tf-lost-answer")) == 1


@pytest.mark.parametrize(
    ("change", "status", "text", "field"),
    [
        ({"region": "mars-north1"}, 400, "Region 'mars-north1' is not available for gcp", "region"),
        ({"type": "huge-db"}, 400, "Unsupported instance type 'huge-db'", "type"),
        ({"memory": "3GB"}, 400, "Memory '3GB' is not available", "memory"),
        ({"tenant_id": "someone-else"}, 404, "Tenant 'someone-else' not found", "tenant_id"),
    ],
)
async def test_4xx_is_permanent_with_auras_message(
    client: AuraClient, emulator: AuraEmulator, change: dict[str, str], status: int, text: str,
    field: str,
) -> None:
    body = {"name": "tf-bad", "region": "europe-west1", "memory": "1GB", "type": "free-db",
            "tenant_id": TENANT, "cloud_provider": "gcp", **change}
    with pytest.raises(ServiceRejected) as caught:
        await client.create_instance(body)
    err = caught.value
    assert text in err.message
    assert err.details["status"] == status
    assert err.details["field"] == field
    assert emulator.count("POST", "/v1/instances") == 1
    assert emulator.instances()["created_count"] == 0
    assert describe_error(err, attempt=1)[2] is False


# ------------------------------------------------------------------------------------- backend
async def test_create_then_wait_online(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *d: beats.append(d)

    created = await env.run(backend.create, project)
    row = await reload(backend, project)
    online = await env.run(backend.wait_online, row)

    [inst] = emulator.live_instances()
    assert inst["name"] == instance_name(project) and len(inst["name"]) <= 30
    assert created == {"backend": "aura", "instance_id": inst["id"], "instance_name": inst["name"],
                       "status": "creating", "created": True, "replaced_instances": []}
    assert online["status"] == "running" and online["polls"] == DEFAULTS.polls_until_running + 1
    assert len(beats) == online["polls"]  # one heartbeat per poll
    row = await reload(backend, project)
    assert (row.graph_backend, row.graph_database, row.graph_instance_id) == ("aura", "neo4j", inst["id"])
    assert row.graph_uri == f"neo4j+s://{inst['id']}.databases.neo4j.io"
    assert row.graph_http_uri == f"https://{inst['id']}.databases.neo4j.io"
    assert row.graph_username == "neo4j"
    # The password: stored encrypted, equal to Aura's, and nowhere else.
    password = await backend.deps.credentials.get(project.id, GRAPH_PASSWORD)
    assert sha256(password) == inst["password_sha256"]
    async with backend.deps.engine.connect() as conn:
        raw = (await conn.exec_driver_sql(
            "select ciphertext from credentials where project_id = %(p)s", {"p": project.id}
        )).scalar_one()
    assert password.encode() not in bytes(raw)
    leaks = [repr(created), repr(online), repr(beats), caplog.text, repr(row.model_dump()),
             repr(emulator.requests())]
    for text in leaks:
        assert password not in text
        assert DEFAULTS.client_secret not in text
    assert await env.run(backend.verify, row) == {
        "backend": "aura", "instance_id": inst["id"], "status": "running"
    }


async def test_create_again_adopts_the_recorded_instance(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    first = await env.run(backend.create, project)
    again = await env.run(backend.create, await reload(backend, project))
    assert again["instance_id"] == first["instance_id"] and again["created"] is False
    assert emulator.count("POST", "/v1/instances") == 1


CRASH_POINTS = ["before_post", "after_post", "after_password", "after_row"]


@pytest.mark.parametrize("point", CRASH_POINTS)
async def test_crash_at_any_point_of_create_leaves_exactly_one_instance(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch, point: str,
) -> None:
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    client, store, credentials = backend.client, backend.deps.store, backend.deps.credentials
    real_create, real_update, real_put = client.create_instance, store.update_project, credentials.put

    async def create_instance(body: dict[str, Any]) -> dict[str, Any]:
        if point == "before_post":
            raise WorkerCrash
        data = await real_create(body)
        if point == "after_post":
            raise WorkerCrash
        return data

    async def put(*args: Any) -> str:
        ref = await real_put(*args)
        if point == "after_password":
            raise WorkerCrash
        return ref

    async def update_project(project_id: uuid.UUID, **values: Any) -> None:
        await real_update(project_id, **values)
        if point == "after_row" and values.get("graph_instance_id"):
            raise WorkerCrash

    monkeypatch.setattr(client, "create_instance", create_instance)
    monkeypatch.setattr(credentials, "put", put)
    monkeypatch.setattr(store, "update_project", update_project)
    with pytest.raises(WorkerCrash):
        await env.run(backend.create, project)
    monkeypatch.undo()

    retried = await env.run(backend.create, await reload(backend, project))
    await env.run(backend.wait_online, await reload(backend, project))

    [inst] = emulator.live_instances()  # one instance in the whole Aura tenant
    row = await reload(backend, project)
    assert row.graph_instance_id == inst["id"]
    stored = await backend.deps.credentials.get(project.id, GRAPH_PASSWORD)
    assert sha256(stored) == inst["password_sha256"]
    state = emulator.instances()
    # The password of an instance created before the crash is lost: it was replaced, not kept.
    orphaned = point in ("after_post", "after_password")
    assert state["created_count"] == (2 if orphaned else 1)
    assert state["deleted_count"] == (1 if orphaned else 0)
    assert len(retried["replaced_instances"]) == (1 if orphaned else 0)
    assert retried["created"] is (point != "after_row")


async def test_cancelled_while_aura_creates_leaves_exactly_one_instance(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    """A real cancellation while the POST's answer is in flight (Aura has already created it)."""
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    emulator.inject(delay=1.5, after=True, count=1, method="POST", path="/v1/instances")
    task = asyncio.ensure_future(env.run(backend.create, project))
    await eventually_true(lambda: len(emulator.live_instances()) == 1)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await reload(backend, project)).graph_instance_id is None

    retried = await ActivityEnvironment().run(backend.create, await reload(backend, project))
    [inst] = emulator.live_instances()
    assert retried["instance_id"] == inst["id"] and len(retried["replaced_instances"]) == 1
    stored = await backend.deps.credentials.get(project.id, GRAPH_PASSWORD)
    assert sha256(stored) == inst["password_sha256"]


async def test_lost_create_answer_is_retryable_and_the_retry_replaces_the_orphan(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    emulator.inject(status=504, after=True, count=1, method="POST", path="/v1/instances")
    with pytest.raises(ServiceUnavailable) as caught:
        await env.run(backend.create, project)
    assert describe_error(caught.value, attempt=1)[2] is True
    retried = await env.run(backend.create, await reload(backend, project))
    [inst] = emulator.live_instances()
    assert retried["instance_id"] == inst["id"]
    assert emulator.instances()["deleted_count"] == 1


async def test_no_new_instance_while_the_orphan_is_still_being_destroyed(
    make_backend: Callable[..., AuraGraphBackend], emulator: AuraEmulator,
    tenant_name: Callable[[], str],
) -> None:
    backend = make_backend(aura_poll_timeout_seconds=0.3)
    project = await new_project(backend, tenant_name)
    emulator.inject(status=504, after=True, count=1, method="POST", path="/v1/instances")
    with pytest.raises(ServiceUnavailable):
        await ActivityEnvironment().run(backend.create, project)
    emulator.configure(polls_until_gone=10**6)
    with pytest.raises(StillWaiting, match="still being destroyed") as caught:
        await ActivityEnvironment().run(backend.create, await reload(backend, project))
    assert describe_error(caught.value, attempt=2)[2] is True
    assert emulator.count("POST", "/v1/instances") == 1
    assert [i["status"] for i in emulator.instances()["instances"]] == ["destroying"]

    emulator.configure(polls_until_gone=1)
    retried = await ActivityEnvironment().run(backend.create, await reload(backend, project))
    [inst] = emulator.instances()["instances"]
    assert inst["id"] == retried["instance_id"] and inst["status"] == "creating"
    assert emulator.count("POST", "/v1/instances") == 2


async def test_recorded_instance_without_password_needs_an_operator(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    await env.run(backend.create, project)
    async with backend.deps.engine.begin() as conn:
        await conn.exec_driver_sql("delete from credentials where project_id = %(p)s", {"p": project.id})
    with pytest.raises(GraphDatabaseFailed, match="an operator must"):
        await env.run(backend.create, await reload(backend, project))
    assert len(emulator.live_instances()) == 1  # nothing deleted, nothing created


async def test_instance_deleted_behind_our_back_is_recreated_once(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    first = await env.run(backend.create, project)
    await backend.client.delete_instance(first["instance_id"])
    second = await env.run(backend.create, await reload(backend, project))
    [inst] = emulator.live_instances()
    assert inst["id"] == second["instance_id"] != first["instance_id"]
    assert sha256(await backend.deps.credentials.get(project.id, GRAPH_PASSWORD)) == inst["password_sha256"]


async def test_free_tier_quota_is_a_permanent_failure(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    env = ActivityEnvironment()
    await env.run(backend.create, await new_project(backend, tenant_name))
    with pytest.raises(ServiceRejected) as caught:
        await env.run(backend.create, await new_project(backend, tenant_name))
    assert caught.value.details["status"] == 409
    assert "only one free instance" in caught.value.message
    assert describe_error(caught.value, attempt=1)[2] is False
    assert len(emulator.live_instances()) == 1


async def test_wait_online_gives_up_with_the_last_status(
    make_backend: Callable[..., AuraGraphBackend], emulator: AuraEmulator,
    tenant_name: Callable[[], str],
) -> None:
    backend = make_backend(aura_poll_timeout_seconds=0.4)
    emulator.configure(polls_until_running=10**6)
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    await env.run(backend.create, project)
    started = time.monotonic()
    with pytest.raises(GraphDatabaseFailed) as caught:
        await env.run(backend.wait_online, await reload(backend, project))
    assert 0.4 <= time.monotonic() - started < 3.0
    err = caught.value
    assert "is not online after" in err.message and "last status seen: creating" in err.message
    assert err.details["last_status"] == "creating" and err.details["polls"] >= 2
    assert describe_error(err, attempt=1)[2] is False


async def test_wait_online_fails_at_once_when_the_instance_is_destroyed(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    created = await env.run(backend.create, project)
    await backend.client.delete_instance(created["instance_id"])
    started = time.monotonic()
    with pytest.raises(GraphDatabaseFailed, match="is destroying; it will not come online") as caught:
        await env.run(backend.wait_online, await reload(backend, project))
    assert time.monotonic() - started < 1.0  # at once, not after the 10 s poll timeout
    assert caught.value.details["last_status"] == "destroying"


async def test_verify_fails_when_the_instance_is_not_running(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    await env.run(backend.create, project)
    with pytest.raises(VerificationFailed, match="is creating, not running"):
        await env.run(backend.verify, await reload(backend, project))


async def test_through_the_step_activities(
    aura_settings: Callable[..., Settings], emulator: AuraEmulator, tenant_name: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``create_graph_database`` + ``wait_graph_database_online`` with ``graph_backend=aura``."""
    caplog.set_level(logging.DEBUG)
    deps = Deps.from_settings(aura_settings())
    try:
        project = (await deps.store.create_project(
            name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES
        )).project
        graph, env = GraphActivities(deps), ActivityEnvironment()
        try:
            created = await env.run(graph.create_graph_database, StepInput(str(project.id)))
        except ApplicationError as err:
            if err.type == "NotImplementedError":
                pytest.skip("activities/graph.py does not implement the steps yet")
            raise
        online = await env.run(graph.wait_graph_database_online, StepInput(str(project.id)))
        assert (created.status, online.status) == ("success", "success")
        [inst] = emulator.live_instances()
        row = await deps.store.get_project(project.id)
        assert row is not None and (row.graph_instance_id, row.graph_status) == (inst["id"], "online")
        password = await deps.credentials.get(project.id, GRAPH_PASSWORD)
        assert sha256(password) == inst["password_sha256"]
        steps = {s.step_name: s for s in await deps.store.get_steps(project.id)}
        for text in (repr(created), repr(online), caplog.text, repr(steps)):
            assert password not in text
    finally:
        await deps.aclose()


async def test_step_timeout_fails_non_retryably_with_a_clear_message(
    aura_settings: Callable[..., Settings], emulator: AuraEmulator, tenant_name: Callable[[], str],
) -> None:
    emulator.configure(polls_until_running=10**6)
    deps = Deps.from_settings(aura_settings(aura_poll_timeout_seconds=0.4))
    try:
        project = (await deps.store.create_project(
            name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES
        )).project
        graph, env = GraphActivities(deps), ActivityEnvironment()
        await env.run(graph.create_graph_database, StepInput(str(project.id)))
        with pytest.raises(ApplicationError) as caught:
            await env.run(graph.wait_graph_database_online, StepInput(str(project.id)))
        assert caught.value.non_retryable and caught.value.type == "GraphDatabaseFailed"
        steps = {s.step_name: s for s in await deps.store.get_steps(project.id)}
        failed = steps["wait_graph_database_online"]
        assert failed.status == "running"  # the workflow writes failed
        assert failed.error_message is not None
        assert "is not online after" in failed.error_message
        assert "last status seen: creating" in failed.error_message
        row = await deps.store.get_project(project.id)
        assert row is not None and row.graph_status == "failed"
    finally:
        await deps.aclose()


def test_http_uri_is_derived_from_the_connection_url() -> None:
    assert http_uri("neo4j+s://ab12cd34.databases.neo4j.io") == "https://ab12cd34.databases.neo4j.io"
    assert http_uri("neo4j+s://ab12cd34.databases.neo4j.io:7687") == "https://ab12cd34.databases.neo4j.io"


# ------------------------------------------------------------------------------------- dropping
def deletes(emulator: AuraEmulator) -> list[str]:
    """Paths of every DELETE that reached the emulator."""
    return [r["path"] for r in emulator.requests() if r["method"] == "DELETE"]


async def test_drop_step_deletes_the_instance_once_and_a_second_run_sends_nothing(
    aura_settings: Callable[..., Settings], emulator: AuraEmulator, tenant_name: Callable[[], str],
) -> None:
    deps = Deps.from_settings(aura_settings())
    try:
        project = (await deps.store.create_project(
            name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES + PROJECT_TEARDOWN_STEP_NAMES
        )).project
        graph, env = GraphActivities(deps), ActivityEnvironment()
        beats: list[Any] = []
        env.on_heartbeat = lambda *d: beats.append(d)
        await env.run(graph.create_graph_database, StepInput(str(project.id)))
        await env.run(graph.wait_graph_database_online, StepInput(str(project.id)))
        [inst] = emulator.live_instances()
        beats.clear()

        dropped = await env.run(graph.drop_graph_database, StepInput(str(project.id)))

        assert dropped.status == "success"
        assert deletes(emulator) == [f"/v1/instances/{inst['id']}"]
        assert emulator.instances()["instances"] == [] and emulator.instances()["deleted_count"] == 1
        shown = ("backend", "instance_ids", "deleted", "credentials_deleted")
        assert {k: dropped.details[k] for k in shown} == {
            "backend": "aura", "instance_ids": [inst["id"]], "deleted": [inst["id"]],
            "credentials_deleted": [GRAPH_PASSWORD]}
        # destroying for polls_until_gone reads, then 404: one heartbeat per poll
        assert dropped.details["polls"] == DEFAULTS.polls_until_gone + 1 == len(beats)
        row = await deps.store.get_project(project.id)
        assert row is not None and (row.graph_status, row.graph_instance_id) == ("deleted", inst["id"])
        assert await deps.credentials.find(project.id, GRAPH_PASSWORD) is None
        step = {s.step_name: s for s in await deps.store.get_steps(project.id)}["drop_graph_database"]
        assert step.status == "success" and step.run_kind == "deprovision"

        again = await env.run(graph.drop_graph_database, StepInput(str(project.id)))
        assert again.status == "success" and again.details["deleted"] == []
        assert len(deletes(emulator)) == 1  # still exactly one DELETE
    finally:
        await deps.aclose()


async def test_drop_retried_after_a_crash_that_followed_the_delete_sends_no_second_delete(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = await new_project(backend, tenant_name)
    env = ActivityEnvironment()
    created = await env.run(backend.create, project)
    real_delete = backend.client.delete_instance

    async def delete_then_crash(instance_id: str) -> bool:
        await real_delete(instance_id)
        raise WorkerCrash

    monkeypatch.setattr(backend.client, "delete_instance", delete_then_crash)
    with pytest.raises(WorkerCrash):
        await env.run(backend.drop, await reload(backend, project))
    monkeypatch.undo()
    assert [i["status"] for i in emulator.instances()["instances"]] == ["destroying"]

    retried = await env.run(backend.drop, await reload(backend, project))

    assert retried["deleted"] == [] and retried["instance_ids"] == [created["instance_id"]]
    assert deletes(emulator) == [f"/v1/instances/{created['instance_id']}"]
    assert emulator.instances()["instances"] == []


async def test_drop_finds_an_unrecorded_instance_by_name(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    """A create whose answer was lost left an instance the row does not name: drop finds it."""
    project = await new_project(backend, tenant_name)
    emulator.inject(status=504, after=True, count=1, method="POST", path="/v1/instances")
    with pytest.raises(ServiceUnavailable):
        await ActivityEnvironment().run(backend.create, project)
    [orphan] = emulator.live_instances(instance_name(project))
    assert (await reload(backend, project)).graph_instance_id is None

    dropped = await ActivityEnvironment().run(backend.drop, await reload(backend, project))

    assert dropped["deleted"] == [orphan["id"]]
    assert emulator.instances()["instances"] == []


async def test_drop_of_a_project_that_never_had_an_instance_sends_no_delete(
    backend: AuraGraphBackend, emulator: AuraEmulator, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(backend, tenant_name)
    dropped = await ActivityEnvironment().run(backend.drop, project)
    assert (dropped["instance_ids"], dropped["deleted"]) == ([], [])
    assert deletes(emulator) == []


async def test_a_slow_destruction_is_retryable_and_the_retry_only_polls(
    make_backend: Callable[..., AuraGraphBackend], emulator: AuraEmulator,
    tenant_name: Callable[[], str],
) -> None:
    backend = make_backend(aura_poll_timeout_seconds=0.3)
    project = await new_project(backend, tenant_name)
    await ActivityEnvironment().run(backend.create, project)
    emulator.configure(polls_until_gone=10**6)
    with pytest.raises(StillWaiting, match="is not gone after") as caught:
        await ActivityEnvironment().run(backend.drop, await reload(backend, project))
    assert describe_error(caught.value, attempt=1)[2] is True

    emulator.configure(polls_until_gone=1)
    dropped = await ActivityEnvironment().run(backend.drop, await reload(backend, project))
    assert dropped["deleted"] == [] and len(deletes(emulator)) == 1
    assert emulator.instances()["instances"] == []


# ------------------------------------------------------------------------------------ emulator
def test_emulator_admin_api_over_http(emulator: AuraEmulator) -> None:
    url = emulator.url  # type: ignore[attr-defined]
    with httpx.Client(base_url=url) as http:
        assert http.post("/_emulator/faults", json={"status": 500, "count": 1, "path": "/v1"}).is_success
        token = http.post("/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(DEFAULTS.client_id, DEFAULTS.client_secret)).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert http.get("/v1/instances", headers=bearer).status_code == 500
        body = {"name": "tf-admin", "region": "europe-west1", "memory": "1GB", "type": "free-db",
                "tenant_id": TENANT, "cloud_provider": "gcp"}
        created = http.post("/v1/instances", json=body, headers=bearer)
        assert created.status_code == 202
        assert http.delete(f"/v1/instances/{created.json()['data']['id']}", headers=bearer).status_code == 202
        state = http.get("/_emulator/instances").json()
        assert [i["status"] for i in state["instances"]] == ["destroying"]
        assert (state["created_count"], state["deleted_count"]) == (1, 0)
        log = http.get("/_emulator/requests").json()["requests"]
        assert [(r["method"], r["status"]) for r in log] == [
            ("POST", 200), ("GET", 500), ("POST", 202), ("DELETE", 202)
        ]
        assert http.get("/v1/instances", headers={"Authorization": "Bearer nope"}).status_code == 401
    text = repr(log) + repr(state)
    assert token not in text and DEFAULTS.client_secret not in text
    assert created.json()["data"]["password"] not in text


async def eventually_true(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_emulator_delete_lifecycle_destroying_then_404(
    client: AuraClient, emulator: AuraEmulator
) -> None:
    """As documented: DELETE answers 202 and the instance is ``destroying``; a DELETE while it is
    destroying answers 202 again without restarting the destruction; then it is gone (404)."""
    emulator.configure(polls_until_gone=2)
    created = await client.create_instance({
        "name": "tf-lifecycle", "region": "europe-west1", "memory": "1GB", "type": "free-db",
        "tenant_id": TENANT, "cloud_provider": "gcp",
    })
    iid = created["id"]
    assert await client.delete_instance(iid) is True
    assert (await client.get_instance(iid) or {}).get("status") == "destroying"
    assert await client.delete_instance(iid) is True
    assert (await client.get_instance(iid) or {}).get("status") == "destroying"
    assert await client.get_instance(iid) is None
    assert await client.delete_instance(iid) is False
    assert statuses(emulator, "DELETE", f"/v1/instances/{iid}") == [202, 202, 404]
    assert statuses(emulator, "GET", f"/v1/instances/{iid}") == [200, 200, 404]
