"""Tenant Postgres: every tenant gets a database of its own, owned by a login role of its own, and
the application schema from versioned SQL files kept in the repo (``tenantflow/tenant_sql``).

A tenant database after both steps::

    t_<name>                       owner t_<name>_owner; CONNECT revoked from PUBLIC
    ├── app.*                      the migrations' objects, owned by the tenant role
    └── tenantflow.tenantflow_migrations
                                   the ledger (version, name, checksum, applied_at), owned by the
                                   admin: the tenant can read it but not rewrite its history

The role's password is generated once (kept encrypted in the credential store, so retries converge on
it) and reaches the server only as a SCRAM verifier computed here: the plaintext can never show up in
the server's statement log or in an error that echoes the statement.

Teardown (``drop_tenant_database``) undoes both steps in reverse: new connections to the database
are refused (``ALLOW_CONNECTIONS false``), the open ones terminated (``pg_terminate_backend``), then
``DROP DATABASE IF EXISTS`` and ``DROP ROLE IF EXISTS``, and last the stored password. Every
statement tolerates a missing object, so a repeated run, or a tenant whose database or role was
never made, succeeds. A client that connects between the termination and the drop makes the drop
fail with ``object_in_use``, an outage by our table: Temporal tries again.

The admin URL's role must be a superuser (as on the dev stack) or at least be able to ``SET ROLE`` to
the roles it creates, since tenant objects are created as the tenant role.

psycopg errors are translated into ours in one place, ``translate_pg_error``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import errors as pg
from psycopg import sql

import tenantflow
from activities.deps import Deps
from activities.mirror import StepActivities, step
from tenantflow.catalog import StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.credentials import CredentialKind
from tenantflow.errors import (
    ConfigurationError,
    DatabaseRejected,
    DatabaseUnavailable,
    TenantflowError,
    VerificationFailed,
)
from tenantflow.models import Project, StepStatus
from tenantflow.names import tenant_db_name, tenant_role_name
from tenantflow.settings import Settings
from tenantflow.tenant_pg import tenant_pg_endpoint

TENANT_SQL_DIR = Path(tenantflow.__file__).parent / "tenant_sql"
DB_PASSWORD = CredentialKind.DB_PASSWORD
LEDGER_SCHEMA = "tenantflow"
LEDGER_TABLE = "tenantflow_migrations"
# pg_advisory_xact_lock key serialising migrations of one tenant database (advisory locks are
# per database, so one constant serves every tenant).
MIGRATION_LOCK_KEY = 0x7466_6D69_6772  # "tfmigr"
_MIGRATION_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# SQLSTATEs that describe an outage or contention rather than a wrong statement: retrying helps.
_TRANSIENT_CLASSES = ("08", "40", "53")  # connection exception, transaction rollback, resources
_TRANSIENT_STATES = frozenset(
    {
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovery)
        "57014",  # query_canceled (statement timeout)
        "55P03",  # lock_not_available
        "55006",  # object_in_use: CREATE DATABASE while someone is connected to the template
    }
)


# ------------------------------------------------------------------------------- errors
def translate_pg_error(exc: psycopg.Error, *, action: str, quiet: bool = False) -> TenantflowError:
    """Our error for a psycopg error: ``DatabaseUnavailable`` for outages, ``DatabaseRejected`` else.

    Connection failures carry no SQLSTATE (libpq reports startup errors as text only), so every
    error without one from a connection attempt or a dropped connection counts as an outage.
    ``quiet`` drops the server's message, for statements whose text holds secret material.
    """
    state = exc.sqlstate
    details: dict[str, Any] = {"sqlstate": state, "pg_error": type(exc).__name__}
    if not quiet and exc.diag.statement_position:
        details["position"] = exc.diag.statement_position  # where in the statement (a migration) it broke
    # The server's primary message, or libpq's first line for a failed connection (it names host,
    # port and user, never the password). Never str() of other errors: a statement error quotes the
    # statement, and a malformed admin URL's error may quote the URL.
    reason = "" if quiet else exc.diag.message_primary or ""
    if not reason and not quiet and state is None and isinstance(exc, psycopg.OperationalError):
        reason = (str(exc).splitlines() or [""])[0]
    message = f"{action} failed: " + (reason or f"{type(exc).__name__} (SQLSTATE {state})")
    if state is None:
        transient = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    else:
        transient = state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_STATES
    if transient:
        return DatabaseUnavailable(message, details=details)
    return DatabaseRejected(message, details=details)


@contextmanager
def pg_errors(action: str, *, quiet: bool = False) -> Iterator[None]:
    """Raise psycopg errors of the block as ours (see ``translate_pg_error``)."""
    try:
        yield
    except psycopg.Error as exc:
        # Not chained: Temporal records an error's causes, and psycopg's text may quote the statement
        # (a role's password verifier) or the connection string. Ours carries what is safe to know.
        raise translate_pg_error(exc, action=action, quiet=quiet) from None


async def _connect(settings: Settings, *, autocommit: bool = True, **params: Any) -> psycopg.AsyncConnection:
    """A connection to the tenant cluster: the admin URL, with ``params`` (dbname, user...) overriding it."""
    return await psycopg.AsyncConnection.connect(
        settings.tenant_pg_admin_url.get_secret_value(),
        autocommit=autocommit,
        connect_timeout=settings.tenant_pg_connect_timeout,
        **params,
    )


def _new_password() -> str:
    return secrets.token_urlsafe(32)


# --------------------------------------------------------------------------- migrations
@dataclass(frozen=True)
class Migration:
    """One ``NNNN_name.sql`` file of the tenant schema."""

    version: int
    name: str
    sql: bytes

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def load_migrations(directory: Path = TENANT_SQL_DIR) -> list[Migration]:
    """The migrations in ``directory``, by version. Malformed names or duplicate versions are
    ``ConfigurationError``s: a release must not ship an ambiguous schema history."""
    if not directory.is_dir():
        raise ConfigurationError(f"tenant migrations directory {directory} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE_RE.fullmatch(path.name)
        if match is None:
            raise ConfigurationError(f"tenant migration {path.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ConfigurationError(f"two tenant migrations have version {version}")
        found[version] = Migration(version, match.group(2), path.read_bytes())
    if not found:
        raise ConfigurationError(f"no tenant migrations in {directory}")
    return [found[v] for v in sorted(found)]


def _pending(migrations: list[Migration], applied: dict[int, str]) -> list[Migration]:
    """Migrations not applied yet; the history already applied must match the repo exactly."""
    known = {m.version: m for m in migrations}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise VerificationFailed(
            "the tenant database has migrations this release does not know",
            details={"unknown_versions": unknown},
        )
    changed = sorted(v for v, checksum in applied.items() if known[v].checksum != checksum)
    if changed:
        raise VerificationFailed(
            "applied tenant migrations were changed afterwards: "
            + ", ".join(known[v].filename for v in changed),
            details={"changed_versions": changed},
        )
    return [m for m in migrations if m.version not in applied]


_LEDGER = sql.Identifier(LEDGER_SCHEMA, LEDGER_TABLE)


async def _read_ledger(conn: psycopg.AsyncConnection) -> dict[int, str]:
    """Applied versions and their checksums; empty if the ledger does not exist yet."""
    qualified = f"{LEDGER_SCHEMA}.{LEDGER_TABLE}"
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,))
    row = await cur.fetchone()
    if not (row and row[0]):
        return {}
    cur = await conn.execute(sql.SQL("SELECT version, checksum FROM {}").format(_LEDGER))
    return {version: checksum for version, checksum in await cur.fetchall()}


async def _ensure_ledger(conn: psycopg.AsyncConnection, role: str) -> None:
    schema, role_id = sql.Identifier(LEDGER_SCHEMA), sql.Identifier(role)
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
    await conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL, "
            "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        ).format(_LEDGER)
    )
    # Read access so the tenant role can prove its schema version (verify_tenant_database).
    await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role_id))
    await conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(_LEDGER, role_id))


async def _apply(conn: psycopg.AsyncConnection, role: str, migration: Migration) -> None:
    with pg_errors(f"tenant migration {migration.filename}"):
        # As the tenant role, so the tenant owns what the migration creates.
        await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        # No parameters: psycopg sends the file as one simple query, several statements allowed.
        await conn.execute(migration.sql)
        await conn.execute("RESET ROLE")
    await conn.execute(
        sql.SQL("INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)").format(_LEDGER),
        (migration.version, migration.name, migration.checksum),
    )


async def migrate(conn: psycopg.AsyncConnection, role: str, migrations: list[Migration]) -> list[Migration]:
    """Apply the pending ``migrations`` in one transaction; returns those applied.

    ``conn`` is an admin connection to the tenant database, not in autocommit. Concurrent callers
    queue on an advisory lock, and the second one finds nothing left to do.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await _ensure_ledger(conn, role)
        pending = _pending(migrations, await _read_ledger(conn))
        for migration in pending:
            await _apply(conn, role, migration)
    return pending


# ----------------------------------------------------------------------------- database
async def _exists(conn: psycopg.AsyncConnection, query: LiteralString, name: str) -> bool:
    cur = await conn.execute(query, (name,))
    return await cur.fetchone() is not None


async def _ensure_role(conn: psycopg.AsyncConnection, role: str, password: str) -> None:
    """Create the login role, or reset its password if it exists, so a retried step converges."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    options = sql.SQL(
        "WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
    ).format(sql.Literal(verifier.decode()))
    create = sql.SQL("CREATE ROLE {} ").format(sql.Identifier(role)) + options
    alter = sql.SQL("ALTER ROLE {} ").format(sql.Identifier(role)) + options
    with pg_errors(f"create or update role {role}", quiet=True):
        if await _exists(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", role):
            await conn.execute(alter)
            return
        try:
            await conn.execute(create)
        except pg.DuplicateObject:  # a concurrent attempt created it first
            await conn.execute(alter)


async def _ensure_database(conn: psycopg.AsyncConnection, database: str, role: str) -> bool:
    """Create the database owned by ``role``; False if it existed (its owner is then made right)."""
    db_id, role_id = sql.Identifier(database), sql.Identifier(role)
    if not await _exists(conn, "SELECT 1 FROM pg_database WHERE datname = %s", database):
        try:
            await conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db_id, role_id))
            return True
        except pg.DuplicateDatabase:  # a concurrent attempt created it first
            pass
    await conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db_id, role_id))
    return False


async def _restrict_connect(conn: psycopg.AsyncConnection, database: str, role: str) -> None:
    # Every role may connect to a new database by default: other tenants' roles must not.
    db_id = sql.Identifier(database)
    await conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db_id))
    await conn.execute(
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db_id, sql.Identifier(role))
    )


async def _drop_database(conn: psycopg.AsyncConnection, database: str) -> tuple[bool, int]:
    """Drop ``database`` if it exists, after closing it to new sessions and terminating the open
    ones; (whether it existed, how many sessions were terminated)."""
    db_id = sql.Identifier(database)
    if not await _exists(conn, "SELECT 1 FROM pg_database WHERE datname = %s", database):
        return False, 0
    await conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(db_id))
    cur = await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    )
    terminated = sum(1 for (done,) in await cur.fetchall() if done)
    await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(db_id))
    return True, terminated


async def _drop_role(conn: psycopg.AsyncConnection, role: str) -> bool:
    """Drop the login role if it exists; whether it existed."""
    existed = await _exists(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", role)
    await conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    return existed


class TenantPostgresActivities(StepActivities):
    """The tenant database and its schema. ``migrations_dir`` is a parameter for tests."""

    def __init__(self, deps: Deps, *, migrations_dir: Path = TENANT_SQL_DIR) -> None:
        super().__init__(deps)
        self.migrations_dir = migrations_dir

    @step(StepName.CREATE_TENANT_DATABASE)
    async def create_tenant_database(self, input: StepInput) -> StepResult:
        """Role with the stored password, database owned by it, CONNECT for that role only."""
        project = await self.load_project(input)
        role, database = tenant_role_name(project.name), tenant_db_name(project.name)
        password = await self.deps.credentials.generated(project.id, DB_PASSWORD, _new_password)
        with pg_errors(f"create tenant database {database}"):
            async with await _connect(self.deps.settings) as conn:
                await _ensure_role(conn, role, password)
                created = await _ensure_database(conn, database, role)
                await _restrict_connect(conn, database, role)
        await self.deps.store.update_project(project.id, tenant_db_name=database, tenant_db_role=role)
        return StepResult(
            status=StepStatus.SUCCESS,
            credential_refs=[DB_PASSWORD],
            details={"database": database, "role": role, "created": created},
        )

    @step(StepName.CREATE_TENANT_SCHEMA)
    async def create_tenant_schema(self, input: StepInput) -> StepResult:
        """Apply the pending tenant migrations, all or none, and record the schema version."""
        project = await self.load_project(input)
        role, database = tenant_role_name(project.name), tenant_db_name(project.name)
        migrations = load_migrations(self.migrations_dir)
        with pg_errors(f"migrate tenant database {database}"):
            async with await _connect(self.deps.settings, dbname=database, autocommit=False) as conn:
                applied = await migrate(conn, role, migrations)
        version = migrations[-1].version
        await self.deps.store.update_project(project.id, schema_version=version)
        return StepResult(
            status=StepStatus.SUCCESS,
            details={"database": database, "schema_version": version,
                     "applied": [m.filename for m in applied]},
        )

    @step(StepName.DROP_TENANT_DATABASE)
    async def drop_tenant_database(self, input: StepInput) -> StepResult:
        """Terminate the tenant database's sessions, drop the database and its role, then delete
        the stored password. Whatever is already gone counts as dropped."""
        project = await self.load_project(input)
        # The row's names if create_tenant_database recorded them, else the ones it would have used.
        database = project.tenant_db_name or tenant_db_name(project.name)
        role = project.tenant_db_role or tenant_role_name(project.name)
        with pg_errors(f"drop tenant database {database}"):
            async with await _connect(self.deps.settings) as conn:
                dropped, terminated = await _drop_database(conn, database)
                role_dropped = await _drop_role(conn, role)
        await self.deps.credentials.delete(project.id, DB_PASSWORD)
        return StepResult(
            status=StepStatus.SUCCESS,
            details={"database": database, "role": role, "database_dropped": dropped,
                     "role_dropped": role_dropped, "sessions_terminated": terminated,
                     "credentials_deleted": [DB_PASSWORD]},
        )


async def verify_tenant_database(
    deps: Deps, project: Project, *, migrations_dir: Path = TENANT_SQL_DIR
) -> dict[str, Any]:
    """Log in to the tenant database as the tenant role and check its schema is the repo's latest.

    Returns ``{"database": ..., "schema_version": ...}``; raises ``VerificationFailed`` whose details
    say what differs (``expected``, ``actual``, ``missing``, ``unexpected`` versions).
    """
    role, database = tenant_role_name(project.name), tenant_db_name(project.name)
    wanted = [m.version for m in load_migrations(migrations_dir)]
    password = await deps.credentials.get(project.id, DB_PASSWORD)
    with pg_errors(f"verify tenant database {database}"):
        async with await _connect(deps.settings, dbname=database, user=role, password=password) as conn:
            applied = sorted(await _read_ledger(conn))
    actual = applied[-1] if applied else None
    missing = sorted(set(wanted) - set(applied))
    unexpected = sorted(set(applied) - set(wanted))
    if missing or unexpected:
        raise VerificationFailed(
            f"tenant database {database} is at schema version {actual}, expected {wanted[-1]}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {unexpected}" if unexpected else ""),
            details={"database": database, "expected": wanted[-1], "actual": actual,
                     "missing": missing, "unexpected": unexpected},
        )
    return {"database": database, "schema_version": actual}


async def tenant_dsn(deps: Deps, project: Project) -> str:
    """``postgresql://`` URL of the tenant database, logged in as the tenant role.

    The URL holds the decrypted password: use it only inside an activity (to hand it to a service
    over its API), never return it from one, log it or put it in an error.
    Host and port are ``tenant_pg_public_host``/``_port`` when set, else the admin URL's
    (``tenantflow.tenant_pg``, which the API's connection route uses too).
    """
    password = await deps.credentials.get(project.id, DB_PASSWORD)
    return tenant_pg_endpoint(deps.settings, project.name).url(password)
