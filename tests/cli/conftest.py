"""CLI test fixtures: the real API served by uvicorn on a free port, and the real worker
provisioning for real (tenant Postgres, API keys, the platform stand-ins; no graph backend, so the
graph steps are skipped), so the CLI is tested against what a user's ``scripts/dev`` runs.

The CLI itself runs as a subprocess (``tests.cli.terminal``); tests await it in a thread, so the
worker, which runs on the test's event loop, keeps working meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.worker import Worker

from api.main import create_app
from standins.server import ThreadedServer
from tenantflow.settings import Settings
from tests.cli.terminal import Session, cli_env, in_terminal, piped
from tests.conftest import API_TOKEN
from tests.e2e.conftest import KEYS, platform  # noqa: F401  (the platform stand-ins, a session fixture)


@dataclass
class Cli:
    """The API's URL and the ``tenantflow`` command, with the dev stack's export line applied."""

    api_url: str
    platform: str

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(self.api_url, API_TOKEN, **extra)

    async def terminal(self, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> Session:
        """``tenantflow ARGS`` in a pseudo-terminal."""
        return await asyncio.to_thread(in_terminal, list(args), env=env or self.env(), **kwargs)

    async def piped(self, *args: str, env: dict[str, str] | None = None, **kwargs: Any) -> Session:
        """``tenantflow ARGS`` with its output piped (no terminal)."""
        return await asyncio.to_thread(piped, list(args), env=env or self.env(), **kwargs)

    def fault(self, **spec: Any) -> None:
        """Make the platform stand-ins fail (``standins.platform``'s ``/_faults``)."""
        httpx.post(f"{self.platform}/_faults", json=spec).raise_for_status()


@pytest.fixture
def cli_settings(make_settings: Callable[..., Settings], platform: str) -> Settings:  # noqa: F811
    return make_settings(
        auth_service_url=f"{platform}/auth", auth_service_key=KEYS.auth,
        realtime_service_url=f"{platform}/realtime", realtime_service_key=KEYS.realtime,
        storage_service_url=f"{platform}/storage", storage_service_key=KEYS.storage,
        service_timeout_seconds=5.0,
    )


@pytest.fixture
def served_api(cli_settings: Settings) -> Iterator[str]:
    """The API on a free loopback port (its own thread and event loop); its base URL."""
    with ThreadedServer(create_app(cli_settings)) as server:
        yield server.url


@pytest.fixture
async def cli(
    served_api: str, cli_settings: Settings, platform: str,  # noqa: F811
    run_worker: Callable[..., contextlib.AbstractAsyncContextManager[Worker]],
) -> AsyncIterator[Cli]:
    """The API and a real worker on a fresh task queue; the stand-ins' faults disarmed afterwards."""
    async with run_worker(cli_settings):
        try:
            yield Cli(api_url=served_api, platform=platform)
        finally:
            httpx.delete(f"{platform}/_faults").raise_for_status()
