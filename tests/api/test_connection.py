"""``GET /v1/projects/{ref}/connection``: the tenant's secrets, decrypted for its owner only once it
is online, never cached or logged, and every read audited. Tenants are written straight through
the Store and the credential store (what the steps would have left), so no workflow runs."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable

import httpx
import pytest

from activities.deps import Deps
from activities.tenant_postgres import tenant_dsn
from tenantflow.catalog import STEPS_BY_KIND, ProjectKind, ProjectStatus
from tenantflow.credentials import CredentialKind
from tenantflow.models import Project
from tests.conftest import API_TOKEN


async def stored_tenant(
    deps: Deps, name: str, *, kind: ProjectKind = ProjectKind.PROJECT,
    status: ProjectStatus = ProjectStatus.ONLINE, graph: bool = True,
) -> tuple[Project, dict[CredentialKind, str]]:
    """A tenant as its steps leave it: credentials sealed in the store, graph fields on the row."""
    project = (await deps.store.create_project(name=name, kind=kind, steps=STEPS_BY_KIND[kind])).project
    kinds = [CredentialKind.GRAPH_PASSWORD] if graph else []
    if kind == ProjectKind.PROJECT:
        kinds += [CredentialKind.DB_PASSWORD, CredentialKind.JWT_SECRET, CredentialKind.ANON_KEY,
                  CredentialKind.SERVICE_ROLE_KEY]
    plain = {k: secrets.token_urlsafe(24) + "/@:%" for k in kinds}  # characters a URL must encode
    for k, secret in plain.items():
        await deps.credentials.put(project.id, k, secret)
    if graph:
        await deps.store.update_project(
            project.id, graph_backend="neo4j", graph_mode="database-per-tenant", graph_database=f"tf-{name}",
            graph_status="online", graph_uri="neo4j://127.0.0.1:7687", graph_http_uri="http://127.0.0.1:7474",
            graph_username=f"tenant_{name}",
        )
    await deps.store.set_project_status(project.id, status)
    found = await deps.store.get_project(project.id)
    assert found is not None
    return found, plain


async def test_an_online_tenant_gets_its_decrypted_secrets_and_each_read_is_audited(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    name = tenant_name()
    project, plain = await stored_tenant(deps, name)

    by_name = await api.get(f"/v1/projects/{name}/connection")
    by_id = await api.get(f"/v1/projects/{project.id}/connection")
    for response in (by_name, by_id):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
    body = by_name.json()
    assert by_id.json() == body
    dsn = await tenant_dsn(deps, project)  # the address the activities hand to platform services
    assert body["postgres"] == {
        "url": dsn, "host": "127.0.0.1", "port": int(dsn.rsplit(":", 1)[1].split("/")[0]),
        "database": f"t_{name}", "user": f"t_{name}_owner", "password": plain[CredentialKind.DB_PASSWORD],
    }
    assert body["graph"] == {
        "backend": "neo4j", "uri": "neo4j://127.0.0.1:7687", "http_uri": "http://127.0.0.1:7474",
        "database": f"tf-{name}", "username": f"tenant_{name}",
        "password": plain[CredentialKind.GRAPH_PASSWORD], "password_withheld": None,
    }
    assert body["keys"] == {"anon": plain[CredentialKind.ANON_KEY],
                            "service_role": plain[CredentialKind.SERVICE_ROLE_KEY]}
    assert plain[CredentialKind.JWT_SECRET] not in by_name.text  # the signing secret stays inside

    reads = await deps.store.list_connection_reads(project.id)
    assert [(r.actor, r.client) for r in reads] == [("api-token", "127.0.0.1")] * 2
    assert reads[0].read_at <= reads[1].read_at
    assert caplog.records, "nothing was captured: the check below would prove nothing"
    assert not any(secret in caplog.text for secret in plain.values())


async def test_a_tenant_without_a_graph_gets_null_for_it(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    project, plain = await stored_tenant(deps, tenant_name(), graph=False)
    body = (await api.get(f"/v1/projects/{project.id}/connection")).json()
    assert body["graph"] is None
    assert body["postgres"]["password"] == plain[CredentialKind.DB_PASSWORD]


async def test_a_user_tenant_has_only_its_graph(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    project, plain = await stored_tenant(deps, "u-" + uuid.uuid4().hex, kind=ProjectKind.USER)
    body = (await api.get(f"/v1/projects/{project.name}/connection")).json()
    assert body["postgres"] is None and body["keys"] is None
    assert body["graph"]["password"] == plain[CredentialKind.GRAPH_PASSWORD]


@pytest.mark.parametrize(
    "status", [ProjectStatus.PENDING, ProjectStatus.PROVISIONING, ProjectStatus.FAILED,
               ProjectStatus.DEPROVISIONING, ProjectStatus.DELETED],
)
async def test_a_tenant_that_is_not_online_is_409_with_its_status(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str], status: ProjectStatus
) -> None:
    project, plain = await stored_tenant(deps, tenant_name(), status=status)
    response = await api.get(f"/v1/projects/{project.id}/connection")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"project {project.name!r} is {status}: connection details are given only once it is online"
    )
    assert not any(secret in response.text for secret in plain.values())
    assert await deps.store.list_connection_reads(project.id) == []


async def test_unknown_tenant_is_404_and_no_token_is_401(
    api: httpx.AsyncClient, anon: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    missing = await api.get(f"/v1/projects/{uuid.uuid4()}/connection")
    assert missing.status_code == 404 and "no project with id or name" in missing.json()["detail"]
    assert (await api.get("/v1/projects/nobody-here/connection")).status_code == 404

    project, plain = await stored_tenant(deps, tenant_name())
    for headers in ({}, {"Authorization": f"Bearer {API_TOKEN}x"}):
        refused = await anon.get(f"/v1/projects/{project.name}/connection", headers=headers)
        assert refused.status_code == 401
        assert not any(secret in refused.text for secret in plain.values())
    assert await deps.store.list_connection_reads(project.id) == []


@pytest.mark.parametrize(
    ("backend", "mode"), [("arcadedb", "database-per-tenant"), ("neo4j", "community-fallback")]
)
async def test_a_shared_admin_graph_login_is_never_handed_out(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str], backend: str, mode: str
) -> None:
    project, plain = await stored_tenant(deps, tenant_name())
    # ArcadeDB: a tenant made before per-tenant users (its row names the server's admin user).
    await deps.store.update_project(project.id, graph_backend=backend, graph_mode=mode, graph_username="root")
    response = await api.get(f"/v1/projects/{project.id}/connection")
    graph = response.json()["graph"]
    assert graph["password"] is None and "shared admin login" in graph["password_withheld"]
    assert plain[CredentialKind.GRAPH_PASSWORD] not in response.text
