"""API test fixtures: the app with its lifespan running, driven in-process through httpx, and a
worker whose step activities are scripted (registered under the real names) so a test decides
when a step finishes and whether it fails. The mirror activities, Postgres and Temporal are real."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.deps import Deps
from activities.project import ProjectActivities
from api.main import create_app
from tenantflow.contracts import StepInput, StepResult
from tenantflow.models import StepStatus
from tenantflow.settings import Settings
from tenantflow.store import Store
from tests.conftest import API_TOKEN, eventually
from worker import WORKFLOWS
from workflows.steps import PROJECT_STEP_NAMES

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@contextlib.asynccontextmanager
async def open_api(
    settings: Settings, *, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on ``create_app(settings)``, with the app's lifespan running."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as client:
            yield client


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API, authenticated with the API token."""
    async with open_api(settings, headers=AUTH) as client:
        yield client


@pytest.fixture
async def anon(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API without credentials."""
    async with open_api(settings) as client:
        yield client


class ScriptedSteps:
    """Step activities that mirror their status like the real ones, with knobs for tests.

    ``fail_once`` steps fail (non-retryably) on their next call; ``hold`` steps wait until released.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()
        self.fail_once: set[str] = set()
        self.held: dict[str, asyncio.Event] = {}

    def hold(self, step: str) -> asyncio.Event:
        """Make ``step`` wait; set the returned event to let it finish."""
        self.held[step] = asyncio.Event()
        return self.held[step]

    def activities(self) -> list[Callable[..., Any]]:
        return [self._make(name) for name in PROJECT_STEP_NAMES]

    def _make(self, name: str) -> Callable[..., Any]:
        @activity.defn(name=name)
        async def step(input: StepInput) -> StepResult:
            self.calls[name] += 1
            pid = uuid.UUID(input.project_id)
            await self.store.step_started(pid, name, attempt=activity.info().attempt)
            gate = self.held.get(name)
            while gate is not None and not gate.is_set():
                activity.heartbeat()
                await asyncio.sleep(0.05)
            if name in self.fail_once:
                self.fail_once.discard(name)
                await self.store.step_finished(pid, name, status=StepStatus.FAILED,
                                               error_message="scripted failure")
                raise ApplicationError("scripted failure", type="ServiceRejected", non_retryable=True)
            await self.store.step_finished(pid, name, status=StepStatus.SKIPPED)
            return StepResult(status=StepStatus.SKIPPED, note="scripted")

        return step


@pytest.fixture
async def script(settings: Settings, deps: Deps, temporal_client: Client) -> AsyncIterator[ScriptedSteps]:
    """A worker on the settings' task queue: real workflows and mirror activities, scripted steps."""
    steps = ScriptedSteps(deps.store)
    mirror = ProjectActivities(deps)
    worker = Worker(
        temporal_client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[mirror.begin_provisioning, mirror.set_project_status, mirror.mark_step,
                    *steps.activities()],
    )
    async with worker:
        yield steps
    for gate in steps.held.values():
        gate.set()


async def workflow_count(client: Client, tenant: str) -> int:
    """How many runs Temporal has for this tenant (search attribute TenantId)."""
    return len([w async for w in client.list_workflows(f'TenantId="{tenant}"')])


async def settled_workflow_count(client: Client, tenant: str) -> int:
    """The run count once visibility has caught up (it is eventually consistent)."""
    await eventually(lambda: workflow_count(client, tenant), timeout=10)
    await asyncio.sleep(0.5)  # give a second run, if there were one, time to show up too
    return await workflow_count(client, tenant)
