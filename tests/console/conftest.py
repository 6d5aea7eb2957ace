"""Console test fixtures: a console client that logs in like a browser (cookie, CSRF token from the
page), the scripted worker of the API tests, and for the browser tests the e2e settings (ArcadeDB,
platform stand-ins) and the app served by uvicorn on a free port."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tenantflow.settings import Settings
from tests.api.conftest import open_api, script  # noqa: F401  (script: a fixture)
from tests.conftest import API_TOKEN
from tests.e2e.conftest import full_settings, platform  # noqa: F401  (fixtures)

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a console page's forms carry."""
    found = CSRF_RE.search(html)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, password: str = API_TOKEN) -> str:
    """Log ``client`` in to the console; returns its session's CSRF token."""
    response = await client.post("/console/login", data={"password": password})
    assert response.status_code == 303, response.text
    return csrf_of((await client.get("/console")).text)


@contextlib.asynccontextmanager
async def console_client(
    settings: Settings, *, base_url: str = "http://console"
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app (lifespan running) that keeps cookies and follows no redirect."""
    async with open_api(settings) as client:
        client.base_url = httpx.URL(base_url)
        yield client


@pytest.fixture
async def console(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A logged-out console client."""
    async with console_client(settings) as client:
        yield client
