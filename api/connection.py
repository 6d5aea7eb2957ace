"""A tenant's connection details, decrypted for one response: the one place the API opens secrets.

Given only for an ``online`` tenant (``NotReady``, a 409, otherwise: a tenant still provisioning
has half its secrets, one being torn down is about to lose them). The secrets are opened from the
credential store here and go straight into the response model; nothing here logs, and the caller
(the route) records the read in the audit table and forbids caching.
"""

from __future__ import annotations

from api.schemas import ApiKeys, ConnectionOut, GraphConnection, PostgresConnection
from tenantflow.catalog import ProjectKind, ProjectStatus
from tenantflow.credentials import CredentialKind, CredentialStore
from tenantflow.errors import NotReady
from tenantflow.graph_clients import GraphMode
from tenantflow.models import Project
from tenantflow.settings import GraphBackend, Settings
from tenantflow.tenant_pg import tenant_pg_endpoint


async def connection_details(
    project: Project, *, settings: Settings, credentials: CredentialStore
) -> ConnectionOut:
    """Postgres, graph and API keys of ``project``, with their secrets.

    Raises:
        NotReady: the tenant is not ``online``, or a secret it should have is not stored.
    """
    if project.status != ProjectStatus.ONLINE:
        raise NotReady(
            f"project {project.name!r} is {project.status}: connection details are given only "
            "once it is online",
            details={"status": project.status},
        )
    return ConnectionOut(
        postgres=await _postgres(project, settings, credentials),
        graph=await _graph(project, settings, credentials),
        keys=await _keys(project, credentials),
    )


async def _postgres(
    project: Project, settings: Settings, credentials: CredentialStore
) -> PostgresConnection | None:
    if project.kind != ProjectKind.PROJECT:
        return None
    endpoint = tenant_pg_endpoint(settings, project.name)
    password = await credentials.get(project.id, CredentialKind.DB_PASSWORD)
    return PostgresConnection(
        url=endpoint.url(password), host=endpoint.host, port=endpoint.port, database=endpoint.database,
        user=endpoint.user, password=password,
    )


async def _graph(
    project: Project, settings: Settings, credentials: CredentialStore
) -> GraphConnection | None:
    # No backend recorded: the graph steps were skipped (no graph platform configured).
    if project.graph_backend is None:
        return None
    shared = _shares_the_admin_login(project, settings)
    return GraphConnection(
        backend=project.graph_backend, uri=project.graph_uri, http_uri=project.graph_http_uri,
        database=project.graph_database, username=project.graph_username,
        password=None if shared else await credentials.get(project.id, CredentialKind.GRAPH_PASSWORD),
        password_withheld=shared,
    )


def _shares_the_admin_login(project: Project, settings: Settings) -> str | None:
    """Why the tenant's stored graph credential must not leave tenantflow, or None.

    In Neo4j's Community fallback (no users per database there), and on an ArcadeDB tenant made
    before per-tenant users until its ``create_graph_database`` runs again, the tenant's graph is
    reached with the server's own admin login: handing it out would open every tenant's graph.
    tenantflow's own client factory (``tenantflow.graph_clients``) still uses it, scoped.
    """
    legacy_arcadedb = (project.graph_backend == GraphBackend.ARCADEDB
                       and project.graph_username == settings.arcadedb_user)
    if legacy_arcadedb or project.graph_mode == GraphMode.COMMUNITY_FALLBACK:
        return "the graph server's shared admin login is not given out (no per-tenant user on this backend)"
    return None


async def _keys(project: Project, credentials: CredentialStore) -> ApiKeys | None:
    if project.kind != ProjectKind.PROJECT:
        return None
    return ApiKeys(
        anon=await credentials.get(project.id, CredentialKind.ANON_KEY),
        service_role=await credentials.get(project.id, CredentialKind.SERVICE_ROLE_KEY),
    )
