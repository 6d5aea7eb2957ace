"""Scoped API keys: made and revoked by an admin, stored hashed, each scope allowed exactly its
routes; per-key create rate and tenant cap; a user's own JWT for their status."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text

from activities.deps import Deps
from tenantflow.db import make_engine
from tenantflow.settings import Settings
from tests.api.conftest import AUTH, ScriptedSteps, open_api
from tests.api.test_connection import stored_tenant


async def new_key(api: httpx.AsyncClient, scope: str, name: str | None = None) -> dict[str, Any]:
    response = await api.post("/v1/api-keys", json={"name": name or f"{scope}-{uuid.uuid4().hex[:6]}",
                                                    "scope": scope})
    assert response.status_code == 201, response.text
    return response.json()


def bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


async def test_each_scope_reaches_exactly_its_routes(
    api: httpx.AsyncClient, anon: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str],
) -> None:
    read, write, admin = [await new_key(api, s) for s in ("read", "write", "admin")]
    name = tenant_name()

    def call(key: dict[str, Any], method: str, path: str, **kw: Any) -> Any:
        return anon.request(method, path, headers=bearer(key), **kw)

    assert (await call(read, "POST", "/v1/projects", json={"name": name})).status_code == 403
    created = await call(write, "POST", "/v1/projects", json={"name": name})
    assert created.status_code == 202, created.text
    for key in (read, write, admin):
        assert (await call(key, "GET", "/v1/projects")).status_code == 200
        assert (await call(key, "GET", f"/v1/projects/{name}/steps")).status_code == 200
    refused = await call(read, "DELETE", f"/v1/projects/{name}")
    assert refused.status_code == 403 and "needs 'write'" in refused.json()["detail"]
    assert (await call(read, "POST", "/v1/projects/retry-failed", json={"dry_run": True})).status_code == 403
    assert (await call(write, "POST", "/v1/projects/retry-failed", json={"dry_run": True})).status_code == 200
    # Connection details (secrets) need admin; below it the answer says why, never the secrets.
    for key in (read, write):
        assert (await call(key, "GET", f"/v1/projects/{name}/connection")).status_code == 403
    assert (await call(admin, "GET", f"/v1/projects/{name}/connection")).status_code in (200, 409)
    for key in (read, write):
        assert (await call(key, "GET", "/v1/api-keys")).status_code == 403
    assert (await call(admin, "GET", "/v1/api-keys")).status_code == 200


async def test_keys_are_shown_once_stored_hashed_and_revoked_at_once(
    api: httpx.AsyncClient, anon: httpx.AsyncClient, settings: Settings
) -> None:
    key = await new_key(api, "read", name="dashboard")
    assert key["key"].startswith("tfk_") and key["prefix"] == key["key"][:12]
    assert (await anon.get("/v1/projects", headers=bearer(key))).status_code == 200

    listed = {k["id"]: k for k in (await api.get("/v1/api-keys")).json()}
    assert "key" not in listed[key["id"]] and listed[key["id"]]["name"] == "dashboard"
    engine = make_engine(settings.database_url.get_secret_value())
    try:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": key["id"]})
            row = found.mappings().one()
    finally:
        await engine.dispose()
    assert key["key"] not in str(dict(row)) and key["key"].encode() not in bytes(row["key_sha256"])

    altered = key["key"][:-1] + ("A" if key["key"][-1] != "A" else "B")
    for wrong in (altered, key["prefix"], "tfk_" + "x" * 43):
        answer = await anon.get("/v1/projects", headers={"Authorization": f"Bearer {wrong}"})
        assert answer.status_code == 401
    revoked = await api.delete(f"/v1/api-keys/{key['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await anon.get("/v1/projects", headers=bearer(key))).status_code == 401
    assert (await api.delete(f"/v1/api-keys/{uuid.uuid4()}")).status_code == 404


async def test_a_keys_creates_are_rate_limited_and_capped(
    make_settings: Callable[..., Settings], script: ScriptedSteps, tenant_name: Callable[[], str]
) -> None:
    settings = make_settings(api_key_creates_per_minute=3, api_key_max_tenants=5)
    async with open_api(settings, headers=AUTH) as api:
        busy = await new_key(api, "write")
        answers = [await api.post("/v1/projects", json={"name": tenant_name()}, headers=bearer(busy))
                   for _ in range(4)]
        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert "3 tenants a minute" in answers[-1].json()["detail"]
        # Another key has its own budget; the bootstrap token has none.
        other = await new_key(api, "write")
        other_created = await api.post("/v1/projects", json={"name": tenant_name()}, headers=bearer(other))
        assert other_created.status_code == 202
        for _ in range(4):
            assert (await api.post("/v1/projects", json={"name": tenant_name()})).status_code == 202

    settings = make_settings(api_key_creates_per_minute=100, api_key_max_tenants=2)
    async with open_api(settings, headers=AUTH) as api:
        capped = await new_key(api, "write")
        codes = [
            (await api.post("/v1/projects", json={"name": tenant_name()}, headers=bearer(capped))).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 403]


async def test_connection_reads_need_admin_and_are_audited_under_the_keys_name(
    api: httpx.AsyncClient, anon: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str],
) -> None:
    project, plain = await stored_tenant(deps, tenant_name())
    admin, write = await new_key(api, "admin", name="ops-laptop"), await new_key(api, "write")
    refused = await anon.get(f"/v1/projects/{project.name}/connection", headers=bearer(write))
    assert refused.status_code == 403 and not any(s in refused.text for s in plain.values())
    answer = await anon.get(f"/v1/projects/{project.name}/connection", headers=bearer(admin))
    assert answer.status_code == 200
    assert [r.actor for r in await deps.store.list_connection_reads(project.id)] == ["ops-laptop"]


JWT_SECRET = "platform-jwt-secret-0123456789abcdef"


def user_token(sub: str, *, secret: str = JWT_SECRET, ttl: float = 300) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time() + ttl), "role": "authenticated"}, secret,
                      algorithm="HS256")


@pytest.mark.parametrize(
    ("token_for", "expected"),
    [
        (lambda me: user_token(me), 404),  # themselves: allowed (no tenant yet for this user)
        (lambda me: user_token(str(uuid.uuid4())), 403),  # another user's token
        (lambda me: user_token(me, ttl=-10), 401),  # expired
        # signed with a secret that is not the platform's
        (lambda me: user_token(me, secret="another-platform-secret-0123456789abcdef"), 401),
    ],
)
async def test_a_user_reads_their_own_status_with_their_jwt(
    make_settings: Callable[..., Settings], token_for: Callable[[str], str], expected: int
) -> None:
    me = str(uuid.uuid4())
    async with open_api(make_settings(platform_jwt_secret=JWT_SECRET)) as anon:
        response = await anon.get(f"/v1/users/{me}/status",
                                  headers={"Authorization": f"Bearer {token_for(me)}"})
        assert response.status_code == expected, response.text
        assert (await anon.get(f"/v1/projects/{me}", headers={
            "Authorization": f"Bearer {user_token(me)}"})).status_code == 401  # nothing else


async def test_without_a_platform_secret_a_user_token_opens_nothing(anon: httpx.AsyncClient) -> None:
    me = str(uuid.uuid4())
    headers = {"Authorization": f"Bearer {user_token(me)}"}
    response = await anon.get(f"/v1/users/{me}/status", headers=headers)
    assert response.status_code == 401
