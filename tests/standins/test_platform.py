"""The platform stand-in itself: persistence, admin credentials, validation and fault injection."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import standins.platform as platform_module
from devstack.postgres import PostgresServer
from standins.platform import AdminKeys, create_app
from standins.server import ThreadedServer

KEYS = AdminKeys()
STORAGE = {"apikey": KEYS.storage}
REALTIME = {"Authorization": f"Bearer {KEYS.realtime}"}
AUTH = {"Authorization": f"Bearer {KEYS.auth}"}
STORAGE_BODY = {"anonKey": "a", "serviceKey": "s", "jwtSecret": "j" * 40,
                "databaseUrl": "postgresql://u:p@127.0.0.1:1/db"}


@pytest.fixture(scope="module")
def database_url(pg: PostgresServer) -> str:
    pg.create_database("standins")
    return pg.url("standins")


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(database_url, check_databases=False)) as s:
        yield s


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as c:
        yield c
    httpx.delete(f"{server.url}/_faults").raise_for_status()


def fault(client: httpx.Client, **spec: Any) -> None:
    client.post("/_faults", json=spec).raise_for_status()


def test_registrations_persist_across_restarts(database_url: str, tenant_name: Any) -> None:
    name = tenant_name()
    with ThreadedServer(create_app(database_url)) as first:
        put = httpx.put(f"{first.url}/storage/tenants/{name}", json=STORAGE_BODY, headers=STORAGE)
        assert put.status_code == 204
    with ThreadedServer(create_app(database_url)) as second:
        got = httpx.get(f"{second.url}/storage/tenants/{name}", headers=STORAGE)
        assert got.status_code == 200 and got.json()["jwtSecret"] == STORAGE_BODY["jwtSecret"]
        rows = httpx.get(f"{second.url}/_registrations", params={"tenant_id": name}).json()
        assert [r["service"] for r in rows["registrations"]] == ["storage"]


def test_admin_credentials_are_checked(client: httpx.Client, tenant_name: Any) -> None:
    name = tenant_name()
    assert client.get(f"/auth/admin/tenants/{name}", headers={"Authorization": "Bearer x"}).status_code == 401
    assert client.get(f"/realtime/api/tenants/{name}").status_code == 403
    assert client.get(f"/storage/tenants/{name}", headers={"apikey": "x"}).status_code == 401
    assert client.get(f"/storage/tenants/{name}", headers=STORAGE).status_code == 404


def test_bodies_are_validated_like_the_real_services(client: httpx.Client, tenant_name: Any) -> None:
    name = tenant_name()
    bad = client.put(f"/storage/tenants/{name}", json={"anonKey": "a"}, headers=STORAGE)
    assert bad.status_code == 400
    assert bad.json()["message"] == "body must have required property 'databaseUrl'"
    bad = client.post("/realtime/api/tenants", json={"tenant": {"external_id": name}}, headers=REALTIME)
    assert bad.status_code == 422 and set(bad.json()["errors"]) == {"jwt_secret", "extensions"}
    tenant = {"external_id": name, "name": name, "jwt_secret": "j", "extensions": [
        {"type": "postgres_cdc_rls", "settings": {"db_host": "h", "db_name": "d", "db_user": "u",
                                                  "db_password": "p", "db_port": "5432", "region": "r"}}]}
    assert client.post("/realtime/api/tenants", json={"tenant": tenant}, headers=REALTIME).status_code == 201
    dup = client.post("/realtime/api/tenants", json={"tenant": tenant}, headers=REALTIME)
    assert dup.status_code == 409 and dup.json()["errors"] == {"external_id": ["has already been taken"]}
    shown = client.get(f"/realtime/api/tenants/{name}", headers=REALTIME).json()["data"]
    assert "db_password" not in shown["extensions"][0]["settings"]
    assert client.put(f"/auth/admin/tenants/{name}", json={"site_url": "x"}, headers=AUTH).status_code == 400


def test_fault_count_then_gone_and_persistent_until_disarmed(client: httpx.Client, tenant_name: Any) -> None:
    url = f"/storage/tenants/{tenant_name()}"
    fault(client, service="storage", kind="status", status=503, count=2)
    assert [client.get(url, headers=STORAGE).status_code for _ in range(3)] == [503, 503, 404]
    fault(client, service="storage", kind="status", status=500, count=0, match="write")
    assert client.get(url, headers=STORAGE).status_code == 404  # reads are not hit
    assert [client.put(url, json=STORAGE_BODY, headers=STORAGE).status_code for _ in range(3)] == [500] * 3
    assert client.get("/_faults").json()["faults"][0]["remaining"] is None
    assert client.delete("/_faults").json() == {"removed": 1}
    assert client.put(url, json=STORAGE_BODY, headers=STORAGE).status_code == 204


def test_after_phase_writes_then_fails(client: httpx.Client, tenant_name: Any) -> None:
    name = tenant_name()
    fault(client, service="storage", kind="status", status=500, phase="after")
    assert client.put(f"/storage/tenants/{name}", json=STORAGE_BODY, headers=STORAGE).status_code == 500
    assert client.get(f"/storage/tenants/{name}", headers=STORAGE).status_code == 200  # it was stored


def test_slow_and_timeout_faults(server: ThreadedServer, client: httpx.Client, tenant_name: Any) -> None:
    url = f"/storage/tenants/{tenant_name()}"
    fault(client, service="storage", kind="slow", delay_seconds=0.3)
    started = time.monotonic()
    assert client.get(url, headers=STORAGE).status_code == 404
    assert time.monotonic() - started >= 0.3
    fault(client, service="storage", kind="timeout")  # hangs for an hour unless the client leaves
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}{url}", headers=STORAGE, timeout=0.3)
    assert client.get("/_health").json() == {"ok": True}


def test_hung_request_does_not_hold_up_shutdown(database_url: str) -> None:
    app = create_app(database_url, faults=[{"service": "*", "kind": "timeout"}])
    with ThreadedServer(app) as s:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{s.url}/storage/tenants/x", timeout=0.3)
        started = time.monotonic()
    assert time.monotonic() - started < 3


def test_command_line(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setenv("TENANTFLOW_REALTIME_SERVICE_KEY", "from-the-environment")
    monkeypatch.delenv("TENANTFLOW_AUTH_SERVICE_KEY", raising=False)
    monkeypatch.setattr(platform_module.uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    platform_module.main(["--port", "8099", "--database-url", database_url, "--storage-key", "k2",
                          "--fault", '{"service": "auth", "kind": "status", "status": 502}'])
    assert served["port"] == 8099 and served["host"] == "127.0.0.1"
    app = served["app"]
    assert app.state.keys.storage == "k2"
    assert app.state.keys.realtime == "from-the-environment"
    assert app.state.keys.auth == KEYS.auth
    assert [f["status"] for f in app.state.faults.listing()] == [502]


def test_delete_endpoints_remove_the_stored_registration(client: httpx.Client, tenant_name: Any) -> None:
    name = tenant_name()
    tenant = {"external_id": name, "name": name, "jwt_secret": "j", "extensions": [
        {"type": "postgres_cdc_rls", "settings": {"db_host": "h", "db_name": "d", "db_user": "u",
                                                  "db_password": "p", "db_port": "5432", "region": "r"}}]}
    auth_body = {"site_url": "https://x", "jwt_secret": "j" * 40, "database_url": "postgresql://u:p@h/d"}
    assert client.put(f"/auth/admin/tenants/{name}", json=auth_body, headers=AUTH).status_code == 201
    assert client.post("/realtime/api/tenants", json={"tenant": tenant}, headers=REALTIME).status_code == 201
    assert client.put(f"/storage/tenants/{name}", json=STORAGE_BODY, headers=STORAGE).status_code == 204
    paths = {"auth": (f"/auth/admin/tenants/{name}", AUTH),
             "realtime": (f"/realtime/api/tenants/{name}", REALTIME),
             "storage": (f"/storage/tenants/{name}", STORAGE)}

    assert [client.delete(p, headers={"apikey": "x", "Authorization": "Bearer x"}).status_code
            for p, _ in paths.values()] == [401, 403, 401]  # admin keys are checked
    assert [client.delete(p, headers=h).status_code for p, h in paths.values()] == [204] * 3
    assert [client.get(p, headers=h).status_code for p, h in paths.values()] == [404] * 3
    listed = client.get("/_registrations", params={"tenant_id": name}).json()["registrations"]
    assert listed == []
    gone = [client.delete(p, headers=h) for p, h in paths.values()]
    assert [r.status_code for r in gone] == [404] * 3
    assert gone[0].json() == {"message": "tenant not found"} and gone[1].json() == {"error": "not found"}


def test_faults_hit_deletes_and_deletions_persist(
    client: httpx.Client, database_url: str, tenant_name: Any
) -> None:
    name = tenant_name()
    url = f"/storage/tenants/{name}"
    assert client.put(url, json=STORAGE_BODY, headers=STORAGE).status_code == 204
    fault(client, service="storage", kind="status", status=503, match="write")
    assert client.delete(url, headers=STORAGE).status_code == 503
    assert client.get(url, headers=STORAGE).status_code == 200  # a "before" fault: nothing deleted
    fault(client, service="storage", kind="status", status=500, phase="after", match="write")
    assert client.delete(url, headers=STORAGE).status_code == 500
    with ThreadedServer(create_app(database_url)) as restarted:  # deleted in Postgres, not in memory
        assert httpx.get(f"{restarted.url}{url}", headers=STORAGE).status_code == 404
