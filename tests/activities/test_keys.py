"""The API-key step against the real mirror database and credential store."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable

import jwt
import pytest_asyncio
from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

from activities.deps import Deps
from activities.keys import API_KEY_ROLES, JWT_SECRET, KeyActivities, issue_api_key
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.contracts import StepInput, StepResult
from tenantflow.models import Project
from tenantflow.settings import Settings

KINDS = [JWT_SECRET, *API_KEY_ROLES]


@pytest_asyncio.fixture
async def keys_deps(make_settings: Callable[..., Settings]) -> AsyncIterator[Deps]:
    """Non-default issuer and lifetime, so the test sees the settings are used."""
    d = Deps.from_settings(make_settings(jwt_issuer="acme-platform", jwt_ttl_seconds=3600))
    yield d
    await d.aclose()


@pytest_asyncio.fixture
async def project(keys_deps: Deps, tenant_name: Callable[[], str]) -> Project:
    created = await keys_deps.store.create_project(
        name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES
    )
    return created.project


async def generate(deps: Deps, project: Project) -> StepResult:
    return await ActivityEnvironment().run(KeyActivities(deps).generate_api_keys, StepInput(str(project.id)))


async def stored(deps: Deps, project: Project) -> dict[str, str]:
    return {kind: await deps.credentials.get(project.id, kind) for kind in KINDS}


async def test_keys_verify_with_the_stored_secret_and_carry_the_claims(
    keys_deps: Deps, project: Project
) -> None:
    result = await generate(keys_deps, project)

    assert result.credential_refs == KINDS
    secrets = await stored(keys_deps, project)
    assert len(secrets[JWT_SECRET]) >= 64  # 48 random bytes, base64url
    for kind, role in API_KEY_ROLES.items():
        claims = jwt.decode(secrets[kind], secrets[JWT_SECRET], algorithms=["HS256"], issuer="acme-platform")
        assert {k: claims[k] for k in ("role", "iss", "ref")} == {
            "role": role, "iss": "acme-platform", "ref": project.name,
        }
        assert claims["exp"] - claims["iat"] == 3600
    steps = {s.step_name: s for s in await keys_deps.store.get_steps(project.id)}
    assert steps["generate_api_keys"].status == "success"
    assert steps["generate_api_keys"].completed_at is not None


async def test_no_secret_leaves_the_activity_or_is_stored_in_clear(
    keys_deps: Deps, project: Project
) -> None:
    result = await generate(keys_deps, project)

    secrets = await stored(keys_deps, project)
    reported = json.dumps(dataclasses.asdict(result))
    async with keys_deps.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT kind, ciphertext FROM credentials WHERE project_id = :p"), {"p": project.id}
        )
        sealed = {kind: bytes(blob) for kind, blob in rows}
    step = next(s for s in await keys_deps.store.get_steps(project.id) if s.step_name == "generate_api_keys")
    mirrored = json.dumps(step.error_details)
    for kind, secret in secrets.items():
        assert secret not in reported and secret not in mirrored
        assert secret.encode() not in sealed[kind]


async def test_a_rerun_keeps_the_secret_and_the_keys(keys_deps: Deps, project: Project) -> None:
    await generate(keys_deps, project)
    before = await stored(keys_deps, project)

    again = await generate(keys_deps, project)

    assert await stored(keys_deps, project) == before
    assert again.details == {"issued": [], "kept": ["anon", "service_role"]}


async def test_a_key_that_does_not_verify_is_replaced_and_the_other_kept(
    keys_deps: Deps, project: Project
) -> None:
    await generate(keys_deps, project)
    before = await stored(keys_deps, project)
    forged = issue_api_key("another-secret-" + "x" * 40, role="anon", issuer="acme-platform",
                           ref=project.name, ttl_seconds=3600)
    await keys_deps.credentials.put(project.id, "anon_key", forged)

    result = await generate(keys_deps, project)

    after = await stored(keys_deps, project)
    assert result.details["issued"] == ["anon"]
    assert after["anon_key"] != forged
    assert jwt.decode(after["anon_key"], before[JWT_SECRET], algorithms=["HS256"],
                      issuer="acme-platform")["role"] == "anon"
    assert after["service_role_key"] == before["service_role_key"]


# ----------------------------------------------------------------------------- delete_api_keys
async def delete(deps: Deps, project: Project) -> StepResult:
    return await ActivityEnvironment().run(KeyActivities(deps).delete_api_keys, StepInput(str(project.id)))


async def kinds_stored(deps: Deps, project: Project) -> list[str]:
    async with deps.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT kind FROM credentials WHERE project_id = :p ORDER BY kind"), {"p": project.id}
        )
        return [kind for (kind,) in rows]


async def test_delete_removes_the_secret_and_both_keys_and_nothing_else(
    keys_deps: Deps, project: Project, tenant_name: Callable[[], str]
) -> None:
    await keys_deps.store.ensure_steps(project.id, PROJECT_TEARDOWN_STEP_NAMES)
    await generate(keys_deps, project)
    await keys_deps.credentials.put(project.id, "tenant_db_password", "not-a-key")
    neighbour = (await keys_deps.store.create_project(
        name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES)).project
    await generate(keys_deps, neighbour)
    secrets = await stored(keys_deps, project)

    result = await delete(keys_deps, project)

    assert result.status == "success"
    assert result.details == {"credentials_deleted": KINDS, "existed": 3}
    assert await kinds_stored(keys_deps, project) == ["tenant_db_password"]
    assert len(await kinds_stored(keys_deps, neighbour)) == 3
    step = next(s for s in await keys_deps.store.get_steps(project.id) if s.step_name == "delete_api_keys")
    assert step.status == "success" and step.result == result.details
    for secret in secrets.values():
        assert secret not in json.dumps(dataclasses.asdict(result))


async def test_delete_twice_and_delete_without_keys_succeed(keys_deps: Deps, project: Project) -> None:
    never_had_keys = await delete(keys_deps, project)
    await generate(keys_deps, project)
    await delete(keys_deps, project)
    again = await delete(keys_deps, project)
    assert (never_had_keys.status, again.status) == ("success", "success")
    assert never_had_keys.details["existed"] == again.details["existed"] == 0
    assert await kinds_stored(keys_deps, project) == []


async def test_credential_store_delete_and_delete_all(keys_deps: Deps, project: Project) -> None:
    creds = keys_deps.credentials
    for kind in ("a", "b", "c"):
        await creds.put(project.id, kind, f"secret-{kind}")
    assert await creds.delete(project.id) == 0  # no kinds: nothing
    assert await creds.delete(project.id, "a", "missing") == 1
    assert await creds.find(project.id, "a") is None and await creds.find(project.id, "b") == "secret-b"
    assert await creds.delete_all(project.id) == 2
    assert await creds.delete_all(project.id) == 0
    assert await kinds_stored(keys_deps, project) == []
