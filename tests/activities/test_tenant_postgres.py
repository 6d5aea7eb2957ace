"""The tenant-Postgres steps against the session's real Postgres server."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import text
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deps import Deps
from activities.tenant_postgres import (
    DB_PASSWORD,
    TENANT_SQL_DIR,
    TenantPostgresActivities,
    load_migrations,
    tenant_dsn,
    verify_tenant_database,
)
from devstack.ports import free_port
from devstack.postgres import PostgresServer
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import VerificationFailed
from tenantflow.models import Project, ProvisioningStep
from tenantflow.settings import Settings

LATEST = load_migrations()[-1].version


async def new_project(deps: Deps, tenant_name: Callable[[], str]) -> Project:
    created = await deps.store.create_project(name=tenant_name(), kind="project", steps=PROJECT_STEP_NAMES)
    return created.project


async def run(step: Callable[..., Any], project: Project) -> StepResult:
    return await ActivityEnvironment().run(step, StepInput(str(project.id)))


async def run_failing(step: Callable[..., Any], project: Project) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await run(step, project)
    return caught.value


async def step_row(deps: Deps, project: Project, name: str) -> ProvisioningStep:
    return next(s for s in await deps.store.get_steps(project.id) if s.step_name == name)


async def fetch(url: str, query: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def ciphertexts(deps: Deps, project: Project) -> dict[str, bytes]:
    async with deps.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT kind, ciphertext FROM credentials WHERE project_id = :p"), {"p": project.id}
        )
        return {kind: bytes(blob) for kind, blob in rows}


@pytest.fixture
def acts(deps: Deps) -> TenantPostgresActivities:
    return TenantPostgresActivities(deps)


@pytest_asyncio.fixture
async def provisioned(
    deps: Deps, acts: TenantPostgresActivities, tenant_name: Callable[[], str]
) -> Project:
    """A tenant after both steps."""
    project = await new_project(deps, tenant_name)
    await run(acts.create_tenant_database, project)
    await run(acts.create_tenant_schema, project)
    fresh = await deps.store.get_project(project.id)
    assert fresh is not None
    return fresh


# ------------------------------------------------------------------ create_tenant_database
async def test_database_is_created_for_a_role_that_logs_in_with_the_stored_password(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)

    result = await run(acts.create_tenant_database, project)

    role, database = result.details["role"], result.details["database"]
    assert result.details["created"] is True
    assert result.credential_refs == [DB_PASSWORD]
    row = await deps.store.get_project(project.id)
    assert row is not None and (row.tenant_db_name, row.tenant_db_role) == (database, role)
    owner = await fetch(pg.url(), "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                        (database,))
    assert owner == [(role,)]
    password = await deps.credentials.get(project.id, DB_PASSWORD)
    assert await fetch(pg.url(database, user=role, password=password),
                       "SELECT current_user, current_database()") == [(role, database)]
    # The secret stays in the credential store, sealed.
    assert password not in json.dumps(dataclasses.asdict(result))
    assert password.encode() not in (await ciphertexts(deps, project))[DB_PASSWORD]
    mirrored = await step_row(deps, project, "create_tenant_database")
    assert mirrored.status == "success"
    assert mirrored.started_at is not None and mirrored.completed_at is not None
    assert mirrored.started_at <= mirrored.completed_at


async def test_rerun_converges_on_the_same_role_password_and_database(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    first = await run(acts.create_tenant_database, project)
    password = await deps.credentials.get(project.id, DB_PASSWORD)

    second = await run(acts.create_tenant_database, project)

    assert second.details == {**first.details, "created": False}
    assert await deps.credentials.get(project.id, DB_PASSWORD) == password
    assert list(await ciphertexts(deps, project)) == [DB_PASSWORD]
    role, database = first.details["role"], first.details["database"]
    counts = await fetch(
        pg.url(),
        "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = %s),"
        " (SELECT count(*) FROM pg_database WHERE datname = %s)",
        (role, database),
    )
    assert counts == [(1, 1)]
    assert await fetch(pg.url(database, user=role, password=password), "SELECT 1") == [(1,)]


async def test_a_tenant_role_cannot_connect_to_another_tenants_database(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, tenant_name: Callable[[], str]
) -> None:
    mine, theirs = await new_project(deps, tenant_name), await new_project(deps, tenant_name)
    my_db = (await run(acts.create_tenant_database, mine)).details
    their_db = (await run(acts.create_tenant_database, theirs)).details
    password = await deps.credentials.get(mine.id, DB_PASSWORD)

    with pytest.raises(psycopg.OperationalError, match="CONNECT privilege"):
        await fetch(pg.url(their_db["database"], user=my_db["role"], password=password), "SELECT 1")
    assert await fetch(pg.url(my_db["database"], user=my_db["role"], password=password), "SELECT 1")


async def test_unreachable_postgres_fails_retryably_and_the_step_row_says_why(
    make_settings: Callable[..., Settings], tenant_name: Callable[[], str]
) -> None:
    closed = f"postgresql://postgres:admin-pw-not-to-leak@127.0.0.1:{free_port()}/postgres"
    deps = Deps.from_settings(make_settings(tenant_pg_admin_url=closed, tenant_pg_connect_timeout=1))
    try:
        project = await new_project(deps, tenant_name)

        err = await run_failing(TenantPostgresActivities(deps).create_tenant_database, project)

        assert err.non_retryable is False
        assert err.type == "DatabaseUnavailable"
        assert "admin-pw-not-to-leak" not in str(err)
        mirrored = await step_row(deps, project, "create_tenant_database")
        assert mirrored.status == "pending"  # retryable: Temporal tries again
        assert mirrored.error_details is not None
        assert mirrored.error_details["type"] == "DatabaseUnavailable"
        assert mirrored.error_details["retryable"] is True
    finally:
        await deps.aclose()


def _cause_chain(err: BaseException) -> str:
    """Every message Temporal would record for ``err``: it follows causes and unsuppressed contexts."""
    texts: list[str] = []
    current: BaseException | None = err
    while current is not None:
        texts.append(f"{current!s} {getattr(current, 'details', '')}")
        suppressed = current.__suppress_context__
        current = current.__cause__ or (None if suppressed else current.__context__)
    return "\n".join(texts)


async def test_a_malformed_admin_url_fails_without_leaking_its_password(
    make_settings: Callable[..., Settings], tenant_name: Callable[[], str]
) -> None:
    # libpq's parse error quotes the fragment it chokes on: here, the password.
    malformed = "postgresql://postgres:leaky pass@127.0.0.1:5432/postgres"
    deps = Deps.from_settings(make_settings(tenant_pg_admin_url=malformed))
    try:
        project = await new_project(deps, tenant_name)

        err = await run_failing(TenantPostgresActivities(deps).create_tenant_database, project)

        assert err.non_retryable is True
        assert "leaky" not in _cause_chain(err)
        mirrored = await step_row(deps, project, "create_tenant_database")
        assert "leaky" not in f"{mirrored.error_message} {mirrored.error_details}"
    finally:
        await deps.aclose()


async def test_an_admin_url_without_privileges_fails_non_retryably_with_the_sqlstate(
    deps: Deps, acts: TenantPostgresActivities, make_settings: Callable[..., Settings],
    pg: PostgresServer, tenant_name: Callable[[], str],
) -> None:
    # A tenant's own login role is a perfectly reachable admin that may not create roles.
    tenant = await new_project(deps, tenant_name)
    details = (await run(acts.create_tenant_database, tenant)).details
    password = await deps.credentials.get(tenant.id, DB_PASSWORD)
    weak_url = pg.url(details["database"], user=details["role"], password=password)
    weak = Deps.from_settings(make_settings(tenant_pg_admin_url=weak_url))
    try:
        project = await new_project(weak, tenant_name)

        err = await run_failing(TenantPostgresActivities(weak).create_tenant_database, project)

        assert err.non_retryable is True
        assert err.type == "DatabaseRejected"
        assert err.details[0]["sqlstate"] == "42501"  # insufficient_privilege
        mirrored = await step_row(weak, project, "create_tenant_database")
        assert mirrored.status == "running"  # the workflow writes failed
        assert mirrored.error_details is not None and mirrored.error_details["sqlstate"] == "42501"
    finally:
        await weak.aclose()


# -------------------------------------------------------------------- create_tenant_schema
async def test_schema_is_applied_once_owned_by_the_tenant_and_recorded(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)
    db = (await run(acts.create_tenant_database, project)).details

    result = await run(acts.create_tenant_schema, project)

    migrations = load_migrations()
    assert result.details["applied"] == [m.filename for m in migrations]
    assert result.details["schema_version"] == LATEST
    row = await deps.store.get_project(project.id)
    assert row is not None and row.schema_version == LATEST
    admin_url = pg.url(db["database"])
    ledger = "SELECT version, name, checksum, applied_at FROM tenantflow.tenantflow_migrations ORDER BY 1"
    recorded = await fetch(admin_url, ledger)
    assert [r[:3] for r in recorded] == [(m.version, m.name, m.checksum) for m in migrations]
    owners = await fetch(admin_url, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'app'")
    assert owners == [(db["role"],)]
    # 0002's column is there, and the tenant can use its tables.
    password = await deps.credentials.get(project.id, DB_PASSWORD)
    tenant_url = pg.url(db["database"], user=db["role"], password=password)
    await fetch(tenant_url, "INSERT INTO app.organizations (name) VALUES ('acme')")
    assert await fetch(tenant_url, "SELECT count(*) FROM app.documents WHERE deleted_at IS NULL") == [(0,)]

    again = await run(acts.create_tenant_schema, project)

    assert again.details["applied"] == []
    assert await fetch(admin_url, ledger) == recorded
    assert (await step_row(deps, project, "create_tenant_schema")).status == "success"


def _migrations_with(tmp_path: Path, extra: dict[str, str]) -> Path:
    """The repo's migrations plus (or overwritten by) ``extra``, in a temp dir."""
    folder = tmp_path / "tenant_sql"
    shutil.copytree(TENANT_SQL_DIR, folder)
    for name, body in extra.items():
        (folder / name).write_text(body)
    return folder


async def test_a_broken_migration_rolls_everything_back_and_fails_non_retryably(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, tenant_name: Callable[[], str],
    tmp_path: Path,
) -> None:
    broken = _migrations_with(
        tmp_path, {"0099_broken.sql": "CREATE TABLE app.half_done (id int);\nSELEC oops;\n"}
    )
    project = await new_project(deps, tenant_name)
    db = (await run(acts.create_tenant_database, project)).details

    err = await run_failing(TenantPostgresActivities(deps, migrations_dir=broken).create_tenant_schema,
                            project)

    assert err.non_retryable is True
    assert err.type == "DatabaseRejected"
    assert "0099_broken.sql" in err.message
    assert err.details[0]["sqlstate"] == "42601"  # syntax_error
    assert err.details[0]["position"]  # where in the file it broke
    # Nothing of 0001, 0002 or 0099 survived, not even the ledger.
    left = await fetch(pg.url(db["database"]),
                       "SELECT to_regnamespace('app'), to_regclass('tenantflow.tenantflow_migrations')")
    assert left == [(None, None)]
    row = await deps.store.get_project(project.id)
    assert row is not None and row.schema_version is None
    mirrored = await step_row(deps, project, "create_tenant_schema")
    assert mirrored.status == "running" and mirrored.error_message is not None  # the workflow writes failed
    assert "0099_broken.sql" in mirrored.error_message


async def test_an_applied_migration_that_changed_fails_non_retryably(
    deps: Deps, provisioned: Project, tmp_path: Path
) -> None:
    first = load_migrations()[0]
    edited = _migrations_with(tmp_path, {first.filename: first.sql.decode() + "\n-- edited later\n"})

    err = await run_failing(TenantPostgresActivities(deps, migrations_dir=edited).create_tenant_schema,
                            provisioned)

    assert err.non_retryable is True
    assert err.type == "VerificationFailed"
    assert err.details[0]["changed_versions"] == [first.version]


# ----------------------------------------------------------------- verify and tenant_dsn
async def test_verify_passes_after_both_steps(deps: Deps, provisioned: Project) -> None:
    assert await verify_tenant_database(deps, provisioned) == {
        "database": provisioned.tenant_db_name, "schema_version": LATEST,
    }


async def test_verify_names_the_missing_version(
    deps: Deps, provisioned: Project, pg: PostgresServer
) -> None:
    assert provisioned.tenant_db_name is not None
    await fetch(pg.url(provisioned.tenant_db_name),
                "DELETE FROM tenantflow.tenantflow_migrations WHERE version = %s", (LATEST,))

    with pytest.raises(VerificationFailed) as caught:
        await verify_tenant_database(deps, provisioned)

    assert caught.value.details["expected"] == LATEST
    assert caught.value.details["actual"] == LATEST - 1
    assert caught.value.details["missing"] == [LATEST]
    assert f"missing [{LATEST}]" in caught.value.message


async def test_tenant_dsn_connects_as_the_tenant(deps: Deps, provisioned: Project) -> None:
    dsn = await tenant_dsn(deps, provisioned)

    assert await fetch(dsn, "SELECT current_user, current_database()") == [
        (provisioned.tenant_db_role, provisioned.tenant_db_name)
    ]


@pytest_asyncio.fixture
async def public_deps(make_settings: Callable[..., Settings]) -> AsyncIterator[Deps]:
    d = Deps.from_settings(
        make_settings(tenant_pg_public_host="db.tenants.example", tenant_pg_public_port=6432)
    )
    yield d
    await d.aclose()


async def test_tenant_dsn_uses_the_public_host_and_port(
    public_deps: Deps, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(public_deps, tenant_name)
    password = await public_deps.credentials.generated(project.id, DB_PASSWORD, lambda: uuid.uuid4().hex)

    dsn = await tenant_dsn(public_deps, project)

    role = f"t_{project.name}_owner".replace("-", "_")
    assert dsn == f"postgresql://{role}:{password}@db.tenants.example:6432/{role.removesuffix('_owner')}"


# ------------------------------------------------------------------- drop_tenant_database
async def on_server(pg: PostgresServer, database: str, role: str) -> tuple[int, int]:
    """How many databases named ``database`` and roles named ``role`` the server has."""
    [counts] = await fetch(
        pg.url(),
        "SELECT (SELECT count(*) FROM pg_database WHERE datname = %s),"
        " (SELECT count(*) FROM pg_roles WHERE rolname = %s)",
        (database, role),
    )
    return counts[0], counts[1]


async def test_drop_terminates_sessions_and_removes_database_role_and_password(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, provisioned: Project
) -> None:
    await deps.store.ensure_steps(provisioned.id, PROJECT_TEARDOWN_STEP_NAMES)
    database, role = provisioned.tenant_db_name, provisioned.tenant_db_role
    assert database and role and await on_server(pg, database, role) == (1, 1)
    password = await deps.credentials.get(provisioned.id, DB_PASSWORD)
    # A client of the tenant is still connected: it must not keep the database alive.
    held = await psycopg.AsyncConnection.connect(pg.url(database, user=role, password=password),
                                                 autocommit=True)
    try:
        result = await run(acts.drop_tenant_database, provisioned)
    finally:
        with contextlib.suppress(psycopg.Error):
            await held.close()

    assert result.status == "success"
    assert result.details == {"database": database, "role": role, "database_dropped": True,
                              "role_dropped": True, "sessions_terminated": 1,
                              "credentials_deleted": [DB_PASSWORD]}
    assert await on_server(pg, database, role) == (0, 0)
    assert await deps.credentials.find(provisioned.id, DB_PASSWORD) is None
    assert password not in json.dumps(dataclasses.asdict(result))
    mirrored = await step_row(deps, provisioned, "drop_tenant_database")
    assert mirrored.status == "success" and mirrored.result == result.details
    assert mirrored.run_kind == "deprovision"


async def test_drop_twice_succeeds_and_the_second_changes_nothing(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, provisioned: Project,
    tenant_name: Callable[[], str],
) -> None:
    other = await new_project(deps, tenant_name)  # a neighbour that must survive
    await run(acts.create_tenant_database, other)
    first = await run(acts.drop_tenant_database, provisioned)

    second = await run(acts.drop_tenant_database, provisioned)

    assert first.details["database_dropped"] is True
    assert second.status == "success"
    assert (second.details["database_dropped"], second.details["role_dropped"],
            second.details["sessions_terminated"]) == (False, False, 0)
    assert await on_server(pg, first.details["database"], first.details["role"]) == (0, 0)
    other_row = await deps.store.get_project(other.id)
    assert other_row is not None and other_row.tenant_db_name and other_row.tenant_db_role
    assert await on_server(pg, other_row.tenant_db_name, other_row.tenant_db_role) == (1, 1)
    assert await deps.credentials.find(other.id, DB_PASSWORD) is not None


async def test_drop_of_a_tenant_whose_database_was_never_created_succeeds(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, tenant_name: Callable[[], str]
) -> None:
    project = await new_project(deps, tenant_name)  # no create step ever ran: no names on the row

    result = await run(acts.drop_tenant_database, project)

    under = project.name.replace("-", "_")
    assert result.status == "success"
    assert result.details == {"database": f"t_{under}", "role": f"t_{under}_owner",
                              "database_dropped": False, "role_dropped": False,
                              "sessions_terminated": 0, "credentials_deleted": [DB_PASSWORD]}


async def test_drop_of_a_half_made_tenant_removes_the_role_it_got(
    deps: Deps, acts: TenantPostgresActivities, pg: PostgresServer, tenant_name: Callable[[], str]
) -> None:
    """The role exists but the database does not, and the row never recorded either name."""
    project = await new_project(deps, tenant_name)
    created = await run(acts.create_tenant_database, project)
    database, role = created.details["database"], created.details["role"]
    await fetch(pg.url(), psycopg.sql.SQL("DROP DATABASE {}").format(psycopg.sql.Identifier(database)))
    await deps.store.update_project(project.id, tenant_db_name=None, tenant_db_role=None)

    result = await run(acts.drop_tenant_database, project)

    assert (result.details["database_dropped"], result.details["role_dropped"]) == (False, True)
    assert await on_server(pg, database, role) == (0, 0)
    assert await deps.credentials.find(project.id, DB_PASSWORD) is None
