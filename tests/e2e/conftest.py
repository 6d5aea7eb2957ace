"""Fixtures of the end-to-end tests: the platform stand-ins as a real HTTP server, and settings
that point every backend at a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.arcadedb import ArcadeDBServer
from devstack.postgres import PostgresServer
from standins.platform import AdminKeys, create_app
from standins.server import ThreadedServer
from tenantflow.settings import Settings

KEYS = AdminKeys()
SERVICES = ("auth", "realtime", "storage")


@pytest.fixture(scope="session")
def platform(pg: PostgresServer) -> Iterator[str]:
    pg.create_database("standins")
    with ThreadedServer(create_app(pg.url("standins"), keys=KEYS)) as server:
        yield server.url


@pytest.fixture(autouse=True)
def _disarm(platform: str) -> Iterator[None]:
    yield
    httpx.delete(f"{platform}/_faults").raise_for_status()


@pytest.fixture
def full_settings(
    make_settings: Callable[..., Settings], platform: str, arcadedb: ArcadeDBServer
) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return make_settings(**{
            "graph_backend": "arcadedb", "arcadedb_http_url": arcadedb.http_url,
            "arcadedb_bolt_uri": arcadedb.bolt_uri, "arcadedb_password": arcadedb.password,
            "auth_service_url": f"{platform}/auth", "auth_service_key": KEYS.auth,
            "realtime_service_url": f"{platform}/realtime", "realtime_service_key": KEYS.realtime,
            "storage_service_url": f"{platform}/storage", "storage_service_key": KEYS.storage,
            "service_timeout_seconds": 5.0, **overrides})

    return make


def fault(platform: str, **spec: Any) -> None:
    httpx.post(f"{platform}/_faults", json=spec).raise_for_status()


def registrations(platform: str, tenant: str) -> dict[str, int]:
    rows = httpx.get(f"{platform}/_registrations", params={"tenant_id": tenant}).json()["registrations"]
    return {s: sum(1 for r in rows if r["service"] == s) for s in SERVICES}
