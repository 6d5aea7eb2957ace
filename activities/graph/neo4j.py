"""Neo4j self-managed (Enterprise or Community) as a graph backend, over Bolt with the admin account
from settings (``neo4j_uri`` / ``neo4j_user`` / ``neo4j_password``).

Edition. ``CALL dbms.components()`` is asked once per backend object, i.e. once per step run; the
mode it leads to is recorded on the project row (``graph_mode``) and read by the later steps.

Enterprise (``database-per-tenant``): against the ``system`` database, with the tenant's database
``graph_db_name(project.name)`` (``tf-<name>``), user ``tf_<name>`` and role ``tf_<name>_rw``, all
validated and backtick-quoted::

    CREATE DATABASE `tf-acme` IF NOT EXISTS
    CREATE USER `tf_acme` IF NOT EXISTS SET PASSWORD $password CHANGE NOT REQUIRED
    CREATE ROLE `tf_acme_rw` IF NOT EXISTS
    GRANT ACCESS ON DATABASE `tf-acme` TO `tf_acme_rw`
    GRANT ALL GRAPH PRIVILEGES ON GRAPH `tf-acme` TO `tf_acme_rw`
    GRANT NAME MANAGEMENT ON DATABASE `tf-acme` TO `tf_acme_rw`
    GRANT INDEX MANAGEMENT ON DATABASE `tf-acme` TO `tf_acme_rw`
    GRANT CONSTRAINT MANAGEMENT ON DATABASE `tf-acme` TO `tf_acme_rw`
    GRANT ROLE `tf_acme_rw` TO `tf_acme`

``NAME MANAGEMENT`` matters: graph privileges alone only write with labels, types and property
keys that already exist (the built-in ``editor`` role's limit), and a new database has none. Every
statement is idempotent (``IF NOT EXISTS``; granting a held privilege is a no-op), so a retried
step repeats them all. The password is generated once (``credentials.generated``: a retry reuses
it, so ``CREATE USER ... IF NOT EXISTS`` never leaves a user with a password we do not have) and
travels only as the ``$password`` parameter. Note the driver logs statement parameters at DEBUG
on the ``neo4j.io`` logger: keep that logger above DEBUG wherever real passwords flow.

Community (``community-fallback``): when the edition is ``community``, or ``CREATE DATABASE``
answers ``Neo.ClientError.Statement.UnsupportedAdministrationCommand``, no database is created.
The tenant lives in the server's default database, its nodes carrying the label
``Tenant_<name>`` (``tenantflow.graph_clients.TenantScope``); a registry node
``(:TenantflowTenant {name, label})`` under the uniqueness constraint ``tenantflow_tenant_name``
claims the name, so two tenants can never share a label and deletion finds what to remove.
Community has no privileges to grant, so the tenant's stored credential is the admin account's
(a per-tenant user would be just as powerful); the isolation is the client's label discipline,
not a security boundary — see ``tenantflow.graph_clients``.

Dropping (``drop``) follows the mode on the row, or, for a tenant whose ``create`` never recorded
one, the edition as ``create`` does. Enterprise, against ``system``, each statement a no-op for
what is gone::

    DROP DATABASE `tf-acme` IF EXISTS
    DROP USER `tf_acme` IF EXISTS
    DROP ROLE `tf_acme_rw` IF EXISTS

Community: the tenant's nodes are deleted in batches of ``DROP_BATCH`` (one transaction each, so a
large tenant never needs one huge transaction), ``MATCH (n:`Tenant_acme`) WITH n LIMIT $batch
DETACH DELETE n RETURN count(n) AS deleted`` until a batch comes back short, then its registry node
``(:TenantflowTenant {name})``, which frees the name and the label.

Readiness: ``SHOW DATABASES YIELD name, currentStatus, statusMessage WHERE name = $name`` until
``online`` (every row, in a cluster), polled by ``activities.graph.backend.poll_until``. ``initial``,
``starting``, ``store copying`` and ``offline`` are waited out; any other status (``quarantined``,
``dirty``, ``unknown``, ...) is a non-retryable ``GraphDatabaseFailed`` carrying the server's
``statusMessage``. ArcadeDB answers the same query, so ``activities.graph.arcadedb`` uses
``wait_database_online`` from here.

Errors: every statement goes through ``tenantflow.graph_clients.run_cypher``, whose
``translate_neo4j_error`` is the one mapping of driver exceptions (``ServiceUnavailable`` /
``SessionExpired`` → retryable ``ServiceUnavailable``; server errors by ``.code`` → permanent with
``{"code": ...}``), shared with the tenant clients.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import neo4j

from activities.deps import Deps
from activities.graph.backend import GRAPH_PASSWORD, Poll, poll_until, verify_with_tenant_client
from tenantflow.errors import GraphDatabaseFailed, PermanentError
from tenantflow.graph_clients import (
    UNSUPPORTED_ADMINISTRATION_COMMAND,
    GraphMode,
    TenantScope,
    open_driver,
    run_cypher,
    tenant_label,
)
from tenantflow.models import Project
from tenantflow.names import graph_db_name, quote_cypher_name, validate_project_name
from tenantflow.settings import Settings

log = logging.getLogger(__name__)

BACKEND = "neo4j"
SYSTEM_DATABASE = "system"
ENTERPRISE = "enterprise"
ONLINE = "online"
WAITING_STATUSES = frozenset({"initial", "starting", "store copying", "offline"})
REGISTRY_LABEL = "TenantflowTenant"
REGISTRY_CONSTRAINT = "tenantflow_tenant_name"
DROP_BATCH = 10_000  # nodes per DETACH DELETE transaction in the community fallback


def graph_user_name(project_name: str) -> str:
    """The tenant's Neo4j user: ``tf_`` + name with ``-`` as ``_``."""
    return "tf_" + validate_project_name(project_name).replace("-", "_")


def graph_role_name(project_name: str) -> str:
    """The role holding the tenant's privileges on its database."""
    return graph_user_name(project_name) + "_rw"


def new_password() -> str:
    return secrets.token_urlsafe(24)


# --------------------------------------------------- shared with the ArcadeDB backend
async def detect_edition(driver: neo4j.AsyncDriver) -> str:
    """``enterprise`` / ``community`` (lower case) as the server reports it."""
    rows = await run_cypher(driver, "CALL dbms.components() YIELD edition RETURN edition",
                            database=SYSTEM_DATABASE)
    return str(rows[0]["edition"]).lower() if rows else "unknown"


async def database_status(driver: neo4j.AsyncDriver, database: str) -> Poll:
    """One readiness poll of ``database`` (see the module docstring for the status rules)."""
    rows = await run_cypher(
        driver, "SHOW DATABASES YIELD name, currentStatus, statusMessage WHERE name = $name",
        {"name": database}, database=SYSTEM_DATABASE,
    )
    if not rows:
        return Poll(False, "absent (not listed by SHOW DATABASES)")
    statuses = [str(r["currentStatus"]) for r in rows]
    for row, status in zip(rows, statuses, strict=True):
        if status != ONLINE and status not in WAITING_STATUSES:
            message = str(row.get("statusMessage") or "").strip() or "no status message"
            raise GraphDatabaseFailed(
                f"graph database {database!r} is {status}: {message}",
                details={"database": database, "status": status, "status_message": message},
            )
    if all(s == ONLINE for s in statuses):
        return Poll(True, ONLINE, {"database": database, "status": ONLINE})
    return Poll(False, ", ".join(sorted(set(statuses))))


async def wait_database_online(
    driver: neo4j.AsyncDriver, database: str, settings: Settings
) -> dict[str, Any]:
    """Poll ``database`` until online, heartbeating (``activities.graph.backend.poll_until``)."""
    return await poll_until(
        lambda: database_status(driver, database), what=f"graph database {database!r}",
        interval=settings.graph_poll_interval_seconds, timeout=settings.graph_wait_timeout_seconds,
    )


# ------------------------------------------------------------------------ the backend
class Neo4jGraphBackend:
    """:class:`activities.graph.backend.GraphBackendImpl` for a self-managed Neo4j server.

    Args:
        deps: The worker's dependencies.
        driver: An admin driver to use instead of one opened from settings (tests script one).
    """

    def __init__(self, deps: Deps, *, driver: neo4j.AsyncDriver | None = None) -> None:
        self.deps = deps
        self.settings = deps.settings
        self._driver = driver
        self._edition: str | None = None

    @property
    def driver(self) -> neo4j.AsyncDriver:
        if self._driver is None:
            s = self.settings
            self._driver = open_driver(s.neo4j_uri, s.neo4j_user, s.neo4j_password.get_secret_value())
        return self._driver

    async def aclose(self) -> None:
        if self._driver is not None:
            await self._driver.close()

    async def edition(self) -> str:
        if self._edition is None:
            self._edition = await detect_edition(self.driver)
        return self._edition

    async def _run(self, cypher: str, params: dict[str, Any] | None = None, *,
                   database: str = SYSTEM_DATABASE) -> list[dict[str, Any]]:
        return await run_cypher(self.driver, cypher, params, database=database)

    # ----------------------------------------------------------------- create
    async def create(self, project: Project) -> dict[str, Any]:
        """Database + user + role + grants on Enterprise; the label scope on Community."""
        database = graph_db_name(project.name)
        edition = await self.edition()
        if edition == ENTERPRISE:
            try:
                await self._run(f"CREATE DATABASE {quote_cypher_name(database)} IF NOT EXISTS")
            except PermanentError as exc:
                if exc.details.get("code") != UNSUPPORTED_ADMINISTRATION_COMMAND:
                    raise
                log.info("%s: the server cannot create databases; community fallback", project.name)
            else:
                username = await self._create_tenant_user(project, database)
                return await self._record(project, database, GraphMode.DATABASE_PER_TENANT, username,
                                          edition=edition)
        return await self._create_community_scope(project, edition)

    async def _create_tenant_user(self, project: Project, database: str) -> str:
        username = graph_user_name(project.name)
        user, role = quote_cypher_name(username), quote_cypher_name(graph_role_name(project.name))
        db = quote_cypher_name(database)
        password = await self.deps.credentials.generated(project.id, GRAPH_PASSWORD, new_password)
        await self._run(
            f"CREATE USER {user} IF NOT EXISTS SET PASSWORD $password CHANGE NOT REQUIRED",
            {"password": password},
        )
        for statement in (
            f"CREATE ROLE {role} IF NOT EXISTS",
            f"GRANT ACCESS ON DATABASE {db} TO {role}",
            f"GRANT ALL GRAPH PRIVILEGES ON GRAPH {db} TO {role}",
            f"GRANT NAME MANAGEMENT ON DATABASE {db} TO {role}",
            f"GRANT INDEX MANAGEMENT ON DATABASE {db} TO {role}",
            f"GRANT CONSTRAINT MANAGEMENT ON DATABASE {db} TO {role}",
            f"GRANT ROLE {role} TO {user}",
        ):
            await self._run(statement)
        return username

    async def _create_community_scope(self, project: Project, edition: str) -> dict[str, Any]:
        database = await self._default_database()
        await self._run(
            f"CREATE CONSTRAINT {REGISTRY_CONSTRAINT} IF NOT EXISTS "
            f"FOR (t:{REGISTRY_LABEL}) REQUIRE t.name IS UNIQUE",
            database=database,
        )
        await self._run(
            f"MERGE (t:{REGISTRY_LABEL} {{name: $name}}) ON CREATE SET t.label = $label",
            {"name": project.name, "label": tenant_label(project.name)}, database=database,
        )
        await self.deps.credentials.put(
            project.id, GRAPH_PASSWORD, self.settings.neo4j_password.get_secret_value()
        )
        details = await self._record(project, database, GraphMode.COMMUNITY_FALLBACK,
                                     self.settings.neo4j_user, edition=edition)
        return {**details, "label": TenantScope.for_project(project.name).label}

    async def _default_database(self) -> str:
        rows = await self._run("SHOW DATABASES YIELD name, `default` WHERE `default` = true RETURN name")
        if not rows:
            raise GraphDatabaseFailed("the graph server reports no default database",
                                      details={"backend": BACKEND})
        return str(rows[0]["name"])

    async def _record(self, project: Project, database: str, mode: GraphMode, username: str, *,
                      edition: str) -> dict[str, Any]:
        await self.deps.store.update_project(
            project.id, graph_backend=BACKEND, graph_database=database, graph_mode=mode.value,
            graph_uri=self.settings.neo4j_uri, graph_username=username,
        )
        return {"backend": BACKEND, "database": database, "mode": mode.value, "edition": edition,
                "username": username}

    # ------------------------------------------------------------------- drop
    async def drop(self, project: Project) -> dict[str, Any]:
        """Database, user and role on Enterprise; the tenant's nodes and registry node on Community."""
        mode = project.graph_mode
        if mode != GraphMode.COMMUNITY_FALLBACK and (
            mode == GraphMode.DATABASE_PER_TENANT or await self.edition() == ENTERPRISE
        ):
            database = graph_db_name(project.name)
            try:
                await self._run(f"DROP DATABASE {quote_cypher_name(database)} IF EXISTS")
            except PermanentError as exc:
                if exc.details.get("code") != UNSUPPORTED_ADMINISTRATION_COMMAND:
                    raise
            else:
                username, role = graph_user_name(project.name), graph_role_name(project.name)
                await self._run(f"DROP USER {quote_cypher_name(username)} IF EXISTS")
                await self._run(f"DROP ROLE {quote_cypher_name(role)} IF EXISTS")
                return {"backend": BACKEND, "mode": GraphMode.DATABASE_PER_TENANT.value,
                        "database": database, "username": username, "role": role}
        return await self._drop_community_scope(project)

    async def _drop_community_scope(self, project: Project) -> dict[str, Any]:
        database = project.graph_database or await self._default_database()
        label = TenantScope.for_project(project.name).label
        nodes = 0
        while True:
            rows = await self._run(
                f"MATCH (n:{label}) WITH n LIMIT $batch DETACH DELETE n RETURN count(n) AS deleted",
                {"batch": DROP_BATCH}, database=database,
            )
            batch = int(rows[0]["deleted"]) if rows else 0
            nodes += batch
            if batch < DROP_BATCH:
                break
        rows = await self._run(
            f"MATCH (t:{REGISTRY_LABEL} {{name: $name}}) DETACH DELETE t RETURN count(t) AS deleted",
            {"name": project.name}, database=database,
        )
        return {"backend": BACKEND, "mode": GraphMode.COMMUNITY_FALLBACK.value, "database": database,
                "label": label, "nodes_deleted": nodes,
                "registry_deleted": bool(rows and rows[0]["deleted"])}

    # -------------------------------------------------------------- readiness
    async def wait_online(self, project: Project) -> dict[str, Any]:
        """Poll the tenant's database (the shared default database in community fallback)."""
        database = project.graph_database or graph_db_name(project.name)
        polled = await wait_database_online(self.driver, database, self.settings)
        return {"backend": BACKEND, "mode": project.graph_mode, **polled}

    async def verify(self, project: Project) -> dict[str, Any]:
        """The tenant's own credentials reach its database (or its label, in the fallback)."""
        return await verify_with_tenant_client(self.deps, project)
