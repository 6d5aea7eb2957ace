"""Real servers for the tests, started once per session: Postgres, the Temporal dev server.

Each test gets its own task queue and tenant names, so tests never see each other's runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.deps import Deps
from devstack.ports import free_port
from devstack.postgres import PostgresServer
from devstack.temporal import temporal_binary
from tenantflow import db, search_attributes
from tenantflow.admission import Admission
from tenantflow.crypto import generate_key
from tenantflow.settings import Settings
from worker import build_worker

API_TOKEN = "test-api-token-0123456789"
ENCRYPTION_KEYS = f"k1:{generate_key()}"


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = PostgresServer(
        tmp_path_factory.mktemp("pg"), port=free_port(), password=secrets.token_urlsafe(12)
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mirror_url(pg: PostgresServer) -> str:
    pg.create_database("tenantflow")
    url = pg.url("tenantflow")
    db.upgrade(url)
    return url


@pytest.fixture
def own_mirror(pg: PostgresServer) -> str:
    """A mirror database of the test's own, migrated: for what acts on every tenant in the mirror
    (the reconciler, admission's cap), which the shared one fills with other tests' tenants."""
    name = f"mirror_{uuid.uuid4().hex[:10]}"
    pg.create_database(name)
    url = pg.url(name)
    db.upgrade(url)
    return url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=list(search_attributes.ALL),
        dev_server_extra_args=["--log-level", "error"],
    )
    yield env
    await env.shutdown()


@pytest.fixture
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def tenant_name() -> Callable[[], str]:
    """Unique, valid tenant names."""
    return lambda: "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_settings(
    pg: PostgresServer, mirror_url: str, temporal_env: WorkflowEnvironment
) -> Callable[..., Settings]:
    """Settings pointing at the session's servers; a fresh task queue per call unless given."""
    target = temporal_env.client.service_client.config.target_host

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            environment="test",
            database_url=mirror_url,
            tenant_pg_admin_url=pg.url(),
            temporal_address=target,
            task_queue=f"tq-{uuid.uuid4().hex[:10]}",
            api_token=API_TOKEN,
            encryption_keys=ENCRYPTION_KEYS,
            step_retry_initial_interval_seconds=0.1,
            graph_poll_interval_seconds=0.1,
            aura_poll_interval_seconds=0.1,
            webhook_secret="test-webhook-secret-0123456789",
            # Tests share one mirror. A cap would count every other test's tenants
            # (tests/test_admission.py tests the cap on a mirror of its own), and a worker's
            # reconciler would start every other test's leftover pending tenants on its own task
            # queue: one did (184 runs), and starved the deletion its test waited for.
            max_runs_in_flight=0,
            reconcile_after_seconds=1e6,
        )
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest_asyncio.fixture(loop_scope="session")
async def deps(settings: Settings) -> AsyncIterator[Deps]:
    d = Deps.from_settings(settings)
    yield d
    await d.aclose()


@pytest.fixture
def run_worker(temporal_client: Client) -> Callable[..., contextlib.AbstractAsyncContextManager[Worker]]:
    """``async with run_worker(settings) as worker:`` — the real worker of worker.py."""

    @contextlib.asynccontextmanager
    async def run(settings: Settings, **worker_kwargs: Any) -> AsyncIterator[Worker]:
        deps = Deps.from_settings(settings)
        worker = build_worker(temporal_client, settings, deps, **worker_kwargs)
        try:
            async with worker, admitting(Admission(deps.store, temporal_client, settings)):
                yield worker
        finally:
            await deps.aclose()

    return run


@contextlib.asynccontextmanager
async def admitting(admission: Admission) -> AsyncIterator[None]:
    """The admission loop every worker process runs (worker.py): tenants that wait for a slot
    are let in as runs end."""
    stop = asyncio.Event()
    loop = asyncio.create_task(admission.run_forever(stop))
    try:
        yield
    finally:
        stop.set()
        await loop


async def eventually(check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Await ``check()`` until it returns a truthy value (it may be sync or async)."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def arcadedb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real ArcadeDB server (Bolt + HTTP) on free ports, started once per session."""
    from devstack.arcadedb import ArcadeDBServer

    server = ArcadeDBServer(
        tmp_path_factory.mktemp("arcadedb"), http_port=free_port(), bolt_port=free_port(),
        password=secrets.token_urlsafe(12), heap="512m",
    )
    server.start()
    yield server
    server.stop()
