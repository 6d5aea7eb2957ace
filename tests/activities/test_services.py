"""Registering tenants with auth, realtime and storage, and verifying them, against the platform
stand-in served over real HTTP with its registrations in the session's Postgres.

Tenants are real: their database, schema and keys come from the real earlier steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.auth_service import AuthService
from activities.deps import Deps
from activities.keys import KeyActivities
from activities.platform_http import idempotency_key
from activities.realtime_service import RealtimeService
from activities.services import ServiceActivities, verify_registrations
from activities.storage_service import StorageService
from activities.tenant_postgres import DB_PASSWORD, TenantPostgresActivities, tenant_dsn
from activities.verify import VerifyActivities
from devstack.postgres import PostgresServer
from standins.platform import AdminKeys, create_app
from standins.server import ThreadedServer
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import VerificationFailed
from tenantflow.models import Project, ProvisioningStep
from tenantflow.settings import Settings

KEYS = AdminKeys()
SERVICES = ("auth", "realtime", "storage")
STEP = {s.name: s.step for s in (AuthService, RealtimeService, StorageService)}
DEREG_STEP = {s.name: s.dereg_step for s in (AuthService, RealtimeService, StorageService)}
TEARDOWN_ORDER = ("storage", "realtime", "auth")


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def platform(pg: PostgresServer) -> Iterator[ThreadedServer]:
    pg.create_database("standins")
    with ThreadedServer(create_app(pg.url("standins"), keys=KEYS)) as server:
        yield server


@pytest.fixture(autouse=True)
def _disarm(platform: ThreadedServer) -> Iterator[None]:
    yield
    httpx.delete(f"{platform.url}/_faults").raise_for_status()


def service_settings(platform: ThreadedServer) -> dict[str, Any]:
    return dict(
        auth_service_url=f"{platform.url}/auth", auth_service_key=KEYS.auth,
        realtime_service_url=f"{platform.url}/realtime", realtime_service_key=KEYS.realtime,
        storage_service_url=f"{platform.url}/storage", storage_service_key=KEYS.storage,
        service_timeout_seconds=1.0,
    )


@pytest_asyncio.fixture
async def deps_for(
    make_settings: Callable[..., Settings], platform: ThreadedServer
) -> AsyncIterator[Callable[..., Deps]]:
    """``deps_for(**overrides)``: Deps whose settings point at the stand-in (overrides win)."""
    made: list[Deps] = []

    def make(**overrides: Any) -> Deps:
        d = Deps.from_settings(make_settings(**{**service_settings(platform), **overrides}))
        made.append(d)
        return d

    yield make
    for d in made:
        await d.aclose()


@pytest.fixture
def sdeps(deps_for: Callable[..., Deps]) -> Deps:
    return deps_for()


@pytest_asyncio.fixture
async def tenant(sdeps: Deps, tenant_name: Callable[[], str]) -> Project:
    """A tenant whose database, schema and API keys exist (the real earlier steps ran)."""
    project = (
        await sdeps.store.create_project(name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES)
    ).project
    pg_steps = TenantPostgresActivities(sdeps)
    for body in (pg_steps.create_tenant_database, pg_steps.create_tenant_schema,
                 KeyActivities(sdeps).generate_api_keys):
        await run(body, project)
    fresh = await sdeps.store.get_project(project.id)
    assert fresh is not None
    return fresh


# ------------------------------------------------------------------------------------------- helpers
async def run(body: Callable[..., Any], project: Project, *, attempt: int = 1) -> StepResult:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    result: StepResult = await env.run(body, StepInput(str(project.id)))
    return result


async def run_failing(body: Callable[..., Any], project: Project, *, attempt: int = 1) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await run(body, project, attempt=attempt)
    return caught.value


def register(deps: Deps, service: str) -> Callable[..., Any]:
    return getattr(ServiceActivities(deps), STEP[service])


async def step_row(deps: Deps, project: Project, name: str) -> ProvisioningStep:
    return next(s for s in await deps.store.get_steps(project.id) if s.step_name == name)


def arm(platform: ThreadedServer, **fault: Any) -> None:
    httpx.post(f"{platform.url}/_faults", json=fault).raise_for_status()


def registrations(platform: ThreadedServer, project: Project, service: str | None = None) -> list[dict]:
    params = {"tenant_id": project.name, **({"service": service} if service else {})}
    response = httpx.get(f"{platform.url}/_registrations", params=params)
    response.raise_for_status()
    rows: list[dict] = response.json()["registrations"]
    return rows


def tamper(platform: ThreadedServer, service: str, project: Project, changes: dict[str, Any]) -> None:
    httpx.patch(f"{platform.url}/_registrations/{service}/{project.name}", json=changes).raise_for_status()


async def secrets_of(deps: Deps, project: Project) -> list[str]:
    kinds = ("jwt_secret", "anon_key", "service_role_key", DB_PASSWORD)
    return [await deps.credentials.get(project.id, k) for k in kinds] + [await tenant_dsn(deps, project)]


def assert_no_secret(secrets: list[str], *texts: Any) -> None:
    for text in texts:
        dumped = text if isinstance(text, str) else json.dumps(text, default=str)
        for secret in secrets:
            assert secret not in dumped


# ------------------------------------------------------------------------------------------- happy
async def test_repeated_registration_leaves_exactly_one_per_service(
    sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    first = {s: await run(register(sdeps, s), tenant) for s in SERVICES}
    again = {s: await run(register(sdeps, s), tenant) for s in SERVICES}
    third = {s: await run(register(sdeps, s), tenant) for s in SERVICES}

    for s in SERVICES:
        assert first[s].status == "success"
        assert first[s].details == {"service": s, "tenant": tenant.name, "created": True}
        assert again[s].details["created"] is False and third[s].details["created"] is False
        row = await step_row(sdeps, tenant, STEP[s])
        assert row.status == "success" and row.error_message is None
        assert row.result == third[s].details and row.error_details is None
    rows = registrations(platform, tenant)
    assert sorted(r["service"] for r in rows) == sorted(SERVICES)
    by = {r["service"]: r for r in rows}
    # Every write of a step carries the same idempotency key, whichever attempt made it.
    for s in SERVICES:
        assert by[s]["idempotency_key"] == idempotency_key(tenant.id, STEP[s])
    # What the services were told: the tenant's real database and keys.
    dsn = await tenant_dsn(sdeps, tenant)
    assert by["storage"]["body"]["databaseUrl"] == dsn
    assert by["storage"]["body"]["anonKey"] == await sdeps.credentials.get(tenant.id, "anon_key")
    assert by["auth"]["body"]["site_url"] == f"https://{tenant.name}.example.com"
    assert by["auth"]["body"]["database_url"] == dsn
    realtime = by["realtime"]["body"]
    assert realtime["external_id"] == tenant.name
    cdc = realtime["extensions"][0]
    assert cdc["type"] == "postgres_cdc_rls"
    assert cdc["settings"]["db_name"] == tenant.tenant_db_name
    assert cdc["settings"]["db_user"] == tenant.tenant_db_role
    assert cdc["settings"]["db_password"] == await sdeps.credentials.get(tenant.id, DB_PASSWORD)
    assert realtime["jwt_secret"] == await sdeps.credentials.get(tenant.id, "jwt_secret")
    # And everything verifies, health checks included (real logins to the tenant database).
    summary = await verify_registrations(sdeps, tenant)
    assert summary["skipped"] == {}
    assert {s: v["ok"] for s, v in summary["services"].items()} == dict.fromkeys(SERVICES, True)
    assert "health.anon_key_accepted" in summary["services"]["auth"]["checked"]
    assert "health.db_connected" in summary["services"]["realtime"]["checked"]


async def test_unconfigured_service_is_skipped_with_the_reason(
    deps_for: Callable[..., Deps], tenant: Project, platform: ThreadedServer
) -> None:
    deps = deps_for(auth_service_url="", realtime_service_url="", storage_service_url="")
    for s in SERVICES:
        result = await run(register(deps, s), tenant)
        reason = f"{s}_service_url is not set"
        assert result.status == "skipped" and result.details == {"skip_reason": reason}
        row = await step_row(deps, tenant, STEP[s])
        assert row.status == "skipped" and row.result == {"skip_reason": reason}
    assert registrations(platform, tenant) == []
    summary = await verify_registrations(deps, tenant)
    assert summary == {"services": {}, "skipped": {s: f"{s}_service_url is not set" for s in SERVICES}}


# ------------------------------------------------------------------------------------------ faults
@pytest.mark.parametrize("service", SERVICES)
async def test_5xx_is_retryable_with_the_status_and_a_retry_converges(
    service: str, sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    arm(platform, service=service, kind="status", status=503, count=1, match="write")
    err = await run_failing(register(sdeps, service), tenant)
    assert err.non_retryable is False and err.type == "ServiceUnavailable"
    assert "503" in err.message
    row = await step_row(sdeps, tenant, STEP[service])
    assert row.status == "pending"  # Temporal will try again; this attempt's error is shown
    assert row.error_details is not None
    assert row.error_details["status"] == 503 and row.error_details["service"] == service
    assert row.error_details["retryable"] is True

    result = await run(register(sdeps, service), tenant, attempt=2)  # Temporal's retry
    assert result.status == "success"
    row = await step_row(sdeps, tenant, STEP[service])
    assert row.status == "success" and row.retry_count == 1 and row.error_message is None
    assert len(registrations(platform, tenant, service)) == 1


async def test_timeout_is_retryable(deps_for: Callable[..., Deps], tenant: Project,
                                    platform: ThreadedServer) -> None:
    deps = deps_for(service_timeout_seconds=0.3)
    arm(platform, service="auth", kind="timeout", count=1)
    err = await run_failing(register(deps, "auth"), tenant)
    assert err.non_retryable is False and err.type == "ServiceUnavailable"
    assert "timed out" in err.message
    row = await step_row(deps, tenant, STEP["auth"])
    assert row.error_details is not None
    assert row.error_details["status"] is None and row.error_details["error"] == "ReadTimeout"
    assert (await run(register(deps, "auth"), tenant, attempt=2)).status == "success"


async def test_unreachable_service_is_retryable(deps_for: Callable[..., Deps], tenant: Project) -> None:
    from devstack.ports import free_port

    deps = deps_for(storage_service_url=f"http://127.0.0.1:{free_port()}/storage")
    err = await run_failing(register(deps, "storage"), tenant)
    assert err.non_retryable is False and err.type == "ServiceUnavailable"
    assert (await step_row(deps, tenant, STEP["storage"])).error_details["error"] == "ConnectError"


@pytest.mark.parametrize("service", SERVICES)
async def test_4xx_is_not_retryable_and_carries_the_services_message(
    service: str, sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    arm(platform, service=service, kind="status", status=422, message="tenant quota exceeded", count=1)
    err = await run_failing(register(sdeps, service), tenant)
    assert err.non_retryable is True and err.type == "ServiceRejected"
    assert "tenant quota exceeded" in err.message and "422" in err.message
    row = await step_row(sdeps, tenant, STEP[service])
    assert row.status == "running" and row.error_details is not None  # the workflow writes failed
    assert row.error_details["status"] == 422
    assert row.error_details["service_message"] == "tenant quota exceeded"
    assert row.error_details["retryable"] is False


async def test_wrong_admin_key_is_rejected(deps_for: Callable[..., Deps], tenant: Project) -> None:
    deps = deps_for(auth_service_key="not-the-key", storage_service_key="not-the-key")
    err = await run_failing(register(deps, "auth"), tenant)
    assert err.non_retryable is True and "invalid admin credentials" in err.message
    err = await run_failing(register(deps, "storage"), tenant)
    assert err.non_retryable is True and "Invalid API Key" in err.message


async def test_realtime_duplicate_after_a_crash_converges(
    sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    # The POST creates the tenant and then answers 409, as if an earlier attempt had made it.
    arm(platform, service="realtime", kind="duplicate_409", count=1)
    result = await run(register(sdeps, "realtime"), tenant)
    assert result.status == "success" and result.details["created"] is False
    rows = registrations(platform, tenant, "realtime")
    assert len(rows) == 1 and rows[0]["body"]["external_id"] == tenant.name
    for s in ("auth", "storage"):
        await run(register(sdeps, s), tenant)
    assert (await verify_registrations(sdeps, tenant))["services"]["realtime"]["ok"] is True


@pytest.mark.parametrize("service", SERVICES)
async def test_registered_then_500_is_retried_into_one_registration(
    service: str, sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    """The service stores the registration, then the answer is lost: a crash after the call."""
    arm(platform, service=service, kind="status", status=500, phase="after", match="write", count=1)
    err = await run_failing(register(sdeps, service), tenant)
    assert err.non_retryable is False
    assert len(registrations(platform, tenant, service)) == 1  # it did happen

    result = await run(register(sdeps, service), tenant, attempt=2)
    assert result.status == "success" and result.details["created"] is False
    assert len(registrations(platform, tenant, service)) == 1


async def test_registered_then_hang_is_a_retryable_timeout(
    deps_for: Callable[..., Deps], tenant: Project, platform: ThreadedServer
) -> None:
    deps = deps_for(service_timeout_seconds=0.3)
    arm(platform, service="storage", kind="timeout", phase="after", match="write", count=1)
    err = await run_failing(register(deps, "storage"), tenant)
    assert err.non_retryable is False and "timed out" in err.message
    assert len(registrations(platform, tenant, "storage")) == 1
    assert (await run(register(deps, "storage"), tenant, attempt=2)).details["created"] is False


# ---------------------------------------------------------------------------------------- verifying
async def test_verify_reports_a_tampered_registration_with_a_clear_diff(
    sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    for s in SERVICES:
        await run(register(sdeps, s), tenant)
    tamper(platform, "auth", tenant, {"site_url": "https://evil.example.com"})
    tamper(platform, "realtime", tenant, {"extensions": [{"type": "postgres_cdc_rls", "settings": {
        "db_host": "10.9.9.9", "db_port": "5432", "db_name": "other", "db_user": "u",
        "db_password": "p", "region": "local"}}]})
    tamper(platform, "storage", tenant, {"jwtSecret": "someone-elses-secret"})

    with pytest.raises(VerificationFailed) as caught:
        await verify_registrations(sdeps, tenant)
    failure = caught.value
    diff = {(m["service"], m["field"]): m for m in failure.details["mismatches"]}
    assert diff[("auth", "site_url")] == {
        "service": "auth", "field": "site_url",
        "expected": f"https://{tenant.name}.example.com", "actual": "https://evil.example.com",
    }
    # db_* come back encrypted from upstream Realtime: the health check is what catches them...
    assert ("realtime", "settings.db_host") not in diff
    # ...and the plain settings that were dropped are reported.
    assert diff[("realtime", "settings.slot_name")] == {
        "service": "realtime", "field": "settings.slot_name",
        "expected": f"realtime_{tenant.tenant_db_name}", "actual": None,
    }
    assert diff[("realtime", "health.db_connected")]["actual"] is False
    assert diff[("storage", "jwtSecret")] == {
        "service": "storage", "field": "jwtSecret", "expected": "[redacted]",
        "actual": "[redacted] (differs)",
    }
    assert ("auth", "jwt_secret") not in diff and ("storage", "anonKey") not in diff
    assert "auth.site_url" in failure.message and "storage.jwtSecret" in failure.message
    assert_no_secret(await secrets_of(sdeps, tenant), failure.message, failure.details)

    # Registering again repairs the drift.
    for s in SERVICES:
        await run(register(sdeps, s), tenant)
    assert all(v["ok"] for v in (await verify_registrations(sdeps, tenant))["services"].values())


async def test_verify_reports_a_missing_registration(
    sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    for s in SERVICES:
        await run(register(sdeps, s), tenant)
    httpx.delete(f"{platform.url}/_registrations/storage/{tenant.name}").raise_for_status()
    with pytest.raises(VerificationFailed) as caught:
        await verify_registrations(sdeps, tenant)
    assert caught.value.details["mismatches"] == [
        {"service": "storage", "field": "registration", "expected": "present", "actual": "absent"}
    ]


async def test_auth_health_rejects_keys_not_signed_with_the_registered_secret(
    sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    await run(register(sdeps, "auth"), tenant)
    await sdeps.credentials.put(tenant.id, "anon_key", "eyJhbGciOiJIUzI1NiJ9.e30.forged")
    with pytest.raises(VerificationFailed) as caught:
        await verify_registrations(sdeps, tenant)
    fields = [m["field"] for m in caught.value.details["mismatches"]]
    assert "health.anon_key_accepted" in fields


async def test_verify_services_step(
    deps_for: Callable[..., Deps], tenant: Project, platform: ThreadedServer
) -> None:
    deps = deps_for(storage_service_url="")
    for s in ("auth", "realtime"):
        await run(register(deps, s), tenant)
    verify = VerifyActivities(deps).verify_services

    result = await run(verify, tenant)
    assert result.status == "success"
    assert set(result.details["checked"]) == {"tenant_database", "registrations"}
    assert result.details["skipped"] == {"graph": "the tenant has no graph database"}
    assert result.details["checked"]["registrations"]["skipped"] == {
        "storage": "storage_service_url is not set"
    }

    tamper(platform, "realtime", tenant, {"name": "somebody-else"})
    err = await run_failing(verify, tenant, attempt=2)
    assert err.non_retryable is True and err.type == "VerificationFailed"
    assert "realtime.name" in err.message
    row = await step_row(deps, tenant, "verify_services")
    assert row.status == "running" and row.error_details is not None  # the workflow writes failed
    failures = row.error_details["failures"]
    assert set(failures) == {"registrations"}
    assert failures["registrations"]["mismatches"] == [{
        "service": "realtime", "field": "name", "expected": tenant.name, "actual": "somebody-else",
    }]
    assert "tenant_database" in row.error_details["passed"]


# -------------------------------------------------------------------------------------------- secrets
async def test_no_secret_in_results_step_rows_errors_or_logs(
    sdeps: Deps, tenant: Project, platform: ThreadedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = await secrets_of(sdeps, tenant)
    seen: list[Any] = []
    for s in SERVICES:
        seen.append(dataclasses.asdict(await run(register(sdeps, s), tenant)))
    # A service that echoes a secret back in its error message is scrubbed.
    jwt_secret = secrets[0]
    arm(platform, service="storage", kind="status", status=400, message=f"bad jwtSecret {jwt_secret}")
    arm(platform, service="auth", kind="status", status=502, message=f"upstream said {secrets[3]}")
    for s in ("storage", "auth"):
        err = await run_failing(register(sdeps, s), tenant)
        seen += [err.message, list(err.details), str(err)]
    assert "[redacted]" in str((await step_row(sdeps, tenant, STEP["storage"])).error_message)
    tamper(platform, "storage", tenant, {"serviceKey": "x", "anonKey": "y"})
    with contextlib.suppress(VerificationFailed):
        seen.append(await verify_registrations(sdeps, tenant))
    with contextlib.suppress(ApplicationError):
        seen.append(dataclasses.asdict(await run(VerifyActivities(sdeps).verify_services, tenant)))
    rows = await sdeps.store.get_steps(tenant.id)
    seen += [(r.step_name, r.error_message, r.error_details) for r in rows]
    assert_no_secret(secrets, seen, caplog.text)
    assert uuid.UUID(str(tenant.id))  # the test really had a tenant


async def test_verify_services_checks_the_graph_and_reports_every_failure_at_once(
    sdeps: Deps, tenant: Project, platform: ThreadedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import activities.verify

    graph_checked: list[str] = []

    async def graph_fails(deps: Deps, project: Project) -> dict[str, Any]:
        graph_checked.append(project.name)
        raise VerificationFailed("graph database tf-x does not answer", details={"database": "tf-x"})

    monkeypatch.setattr(activities.verify, "verify_graph", graph_fails)
    await sdeps.store.update_project(tenant.id, graph_backend="arcadedb")
    for s in ("auth", "realtime"):  # storage never registered
        await run(register(sdeps, s), tenant)

    err = await run_failing(VerifyActivities(sdeps).verify_services, tenant)
    assert graph_checked == [tenant.name]
    assert err.non_retryable is True
    assert "graph: graph database tf-x does not answer" in err.message
    assert "storage.registration" in err.message
    row = await step_row(sdeps, tenant, "verify_services")
    assert row.error_details is not None
    failures = row.error_details["failures"]
    assert failures["graph"] == {"message": "graph database tf-x does not answer", "database": "tf-x"}
    assert failures["registrations"]["mismatches"] == [
        {"service": "storage", "field": "registration", "expected": "present", "actual": "absent"}
    ]
    assert set(row.error_details["passed"]) == {"tenant_database"}
    assert row.error_details["skipped"] == {}


# ------------------------------------------------------------------------------------ deregistering
def deregister(deps: Deps, service: str) -> Callable[..., Any]:
    return getattr(ServiceActivities(deps), DEREG_STEP[service])


async def test_deregistration_removes_each_registration_without_the_tenants_secrets(
    sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    for s in SERVICES:
        await run(register(sdeps, s), tenant)
    await sdeps.store.ensure_steps(tenant.id, PROJECT_TEARDOWN_STEP_NAMES)
    await sdeps.credentials.delete_all(tenant.id)  # deregistration must not need them

    for s in TEARDOWN_ORDER:
        result = await run(deregister(sdeps, s), tenant)
        assert result.status == "success"
        assert result.details == {"service": s, "tenant": tenant.name, "deleted": True}
        assert registrations(platform, tenant, s) == []
        row = await step_row(sdeps, tenant, DEREG_STEP[s])
        assert row.status == "success" and row.result == result.details and row.run_kind == "deprovision"
    assert registrations(platform, tenant) == []

    again = {s: await run(deregister(sdeps, s), tenant) for s in TEARDOWN_ORDER}
    assert {s: (r.status, r.details["deleted"]) for s, r in again.items()} == dict.fromkeys(
        TEARDOWN_ORDER, ("success", False))
    assert registrations(platform, tenant) == []


async def test_deregistering_a_tenant_that_was_never_registered_succeeds(
    sdeps: Deps, tenant_name: Callable[[], str], platform: ThreadedServer
) -> None:
    project = (await sdeps.store.create_project(
        name=tenant_name(), kind="project", steps=PROJECT_TEARDOWN_STEP_NAMES)).project
    for s in TEARDOWN_ORDER:
        result = await run(deregister(sdeps, s), project)
        assert (result.status, result.details["deleted"]) == ("success", False)


async def test_deregistration_leaves_other_tenants_alone(
    sdeps: Deps, tenant: Project, tenant_name: Callable[[], str], platform: ThreadedServer
) -> None:
    for s in SERVICES:
        await run(register(sdeps, s), tenant)
    other = (await sdeps.store.create_project(
        name=tenant_name(), kind="project", steps=PROJECT_TEARDOWN_STEP_NAMES)).project
    for s in TEARDOWN_ORDER:
        await run(deregister(sdeps, s), other)
    assert sorted(r["service"] for r in registrations(platform, tenant)) == sorted(SERVICES)


async def test_deregistration_of_an_unconfigured_service_is_skipped(
    deps_for: Callable[..., Deps], tenant: Project, platform: ThreadedServer
) -> None:
    deps = deps_for(auth_service_url="", realtime_service_url="", storage_service_url="")
    for s in TEARDOWN_ORDER:
        result = await run(deregister(deps, s), tenant)
        assert result.status == "skipped"
        assert result.details == {"skip_reason": f"{s}_service_url is not set"}


@pytest.mark.parametrize("service", SERVICES)
async def test_deregistration_lost_answer_is_retryable_and_the_retry_finds_it_gone(
    service: str, sdeps: Deps, tenant: Project, platform: ThreadedServer
) -> None:
    """The service deletes the registration, then the answer is lost (a crash after the call)."""
    await run(register(sdeps, service), tenant)
    arm(platform, service=service, kind="status", status=500, phase="after", match="write", count=1)
    err = await run_failing(deregister(sdeps, service), tenant)
    assert err.non_retryable is False and err.type == "ServiceUnavailable"
    assert registrations(platform, tenant, service) == []  # it did happen

    result = await run(deregister(sdeps, service), tenant, attempt=2)
    assert (result.status, result.details["deleted"]) == ("success", False)


async def test_deregistration_with_a_wrong_admin_key_is_not_retryable(
    deps_for: Callable[..., Deps], tenant: Project, platform: ThreadedServer
) -> None:
    deps = deps_for(realtime_service_key="not-the-key")
    err = await run_failing(deregister(deps, "realtime"), tenant)
    assert err.non_retryable is True and err.type == "ConfigurationError"
    assert "not-the-key" not in err.message + json.dumps(err.details, default=str)
