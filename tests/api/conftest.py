"""API test fixtures: the app with its lifespan running, driven in-process through httpx, and a
worker whose step activities are scripted (registered under the real names) so a test decides
when a step finishes and whether it fails. The mirror activities, Postgres and Temporal are real."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from activities.deps import Deps
from activities.project import ProjectActivities
from api.main import create_app
from tenantflow.admission import Admission
from tenantflow.settings import Settings
from tests.conftest import API_TOKEN, admitting, eventually
from tests.scripted import ScriptedSteps
from worker import WORKFLOWS

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


@pytest.fixture
async def script(settings: Settings, deps: Deps, temporal_client: Client) -> AsyncIterator[ScriptedSteps]:
    """A worker on the settings' task queue: real workflows and mirror activities, scripted steps."""
    steps = ScriptedSteps(deps, skip_all=True)
    mirror = ProjectActivities(deps)
    worker = Worker(
        temporal_client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[mirror.begin_provisioning, mirror.set_project_status, mirror.mark_step,
                    *steps.activities()],
    )
    async with worker, admitting(Admission(deps.store, temporal_client, settings)):
        yield steps
    steps.release_all()


async def workflow_count(client: Client, tenant: str) -> int:
    """How many runs Temporal has for this tenant (search attribute TenantId)."""
    return len([w async for w in client.list_workflows(f'TenantId="{tenant}"')])


async def settled_workflow_count(client: Client, tenant: str) -> int:
    """The run count once visibility has caught up (it is eventually consistent)."""
    await eventually(lambda: workflow_count(client, tenant), timeout=10)
    await asyncio.sleep(0.5)  # give a second run, if there were one, time to show up too
    return await workflow_count(client, tenant)
