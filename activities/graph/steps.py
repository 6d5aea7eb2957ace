"""The graph steps: create the tenant's graph database, then wait until it is online; and, to
deprovision, drop it.

The platform comes from ``settings.graph_backend``; ``BACKENDS`` names the implementation of
:class:`activities.graph.backend.GraphBackendImpl` for each value::

    none      → both steps are skipped
    neo4j     → activities.graph.neo4j.Neo4jGraphBackend        (self-managed Enterprise / Community)
    arcadedb  → activities.graph.arcadedb.ArcadeDBGraphBackend  (database per tenant, Bolt + HTTP)
    aura      → activities.graph.aura.AuraGraphBackend          (one AuraDB instance per tenant)

The steps keep ``projects.graph_status`` true: ``provisioning`` once the database is asked for,
``online`` once it answers, ``failed`` when the server reports it failed or it never came online
(the readiness poll and its timeout: ``activities.graph.backend.poll_until``). The client factory
(``tenantflow.graph_clients``) refuses tenants that are not ``online``.

``drop_graph_database`` has the backend drop what it made, deletes the stored graph password and
sets ``deleted``; the other ``graph_*`` columns stay, for audit. A tenant recorded on another
backend than the configured one is a ``ConfigurationError``: the worker cannot reach its server,
and calling the graph deleted would be a lie. A tenant with no recorded backend on a worker
configured with ``none`` never had a graph: the step is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.deps import Deps
from activities.graph.arcadedb import ArcadeDBGraphBackend
from activities.graph.aura import AuraGraphBackend
from activities.graph.backend import GRAPH_PASSWORD, GraphBackendImpl, opened
from activities.graph.neo4j import Neo4jGraphBackend
from activities.mirror import StepActivities, StepSkipped, step
from tenantflow.catalog import GraphStatus, StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import ConfigurationError, GraphDatabaseFailed
from tenantflow.models import Project, StepStatus
from tenantflow.settings import GraphBackend

BackendFactory = Callable[[Deps], GraphBackendImpl]

BACKENDS: dict[GraphBackend, BackendFactory] = {
    GraphBackend.NEO4J: Neo4jGraphBackend,
    GraphBackend.ARCADEDB: ArcadeDBGraphBackend,
    GraphBackend.AURA: AuraGraphBackend,
}


def backend_for(deps: Deps, backend: str | None = None) -> GraphBackendImpl:
    """The implementation for ``backend`` (default: the configured one).

    Args:
        deps: The worker's dependencies, handed to the implementation.
        backend: A ``GraphBackend`` value; ``None`` means ``settings.graph_backend``.

    Raises:
        StepSkipped: The backend is ``none``.
    """
    factory = BACKENDS.get(GraphBackend(backend or deps.settings.graph_backend))
    if factory is None:
        raise StepSkipped("graph_backend is 'none': tenants get no graph database")
    return factory(deps)


class GraphActivities(StepActivities):
    """The two graph steps. ``backends`` picks the implementation (tests pass one that wraps a
    scripted driver); by default it follows ``settings.graph_backend``."""

    def __init__(self, deps: Deps, *, backends: BackendFactory = backend_for) -> None:
        super().__init__(deps)
        self._backends = backends

    @step(StepName.CREATE_GRAPH_DATABASE)
    async def create_graph_database(self, input: StepInput) -> StepResult:
        """Create the tenant's database, user and grants (idempotent); graph_status → provisioning."""
        async with opened(self._backends(self.deps)) as impl:
            project = await self.load_project(input)
            details = await impl.create(project)
        await self.deps.store.update_project(project.id, graph_status=GraphStatus.PROVISIONING)
        return StepResult(
            status=StepStatus.SUCCESS, credential_refs=[GRAPH_PASSWORD],
            details=details,
        )

    @step(StepName.WAIT_GRAPH_DATABASE_ONLINE)
    async def wait_graph_database_online(self, input: StepInput) -> StepResult:
        """Poll until the database is online (graph_status → online) or failed (→ failed)."""
        async with opened(self._backends(self.deps)) as impl:
            project = await self.load_project(input)
            try:
                details = await impl.wait_online(project)
            except GraphDatabaseFailed:
                await self.deps.store.update_project(project.id, graph_status=GraphStatus.FAILED)
                raise
        await self.deps.store.update_project(project.id, graph_status=GraphStatus.ONLINE)
        return StepResult(status=StepStatus.SUCCESS, details=details)

    @step(StepName.DROP_GRAPH_DATABASE)
    async def drop_graph_database(self, input: StepInput) -> StepResult:
        """Drop the tenant's graph database (gone already counts), delete its stored password;
        graph_status → deleted."""
        project = await self.load_project(input)
        configured = GraphBackend(self.deps.settings.graph_backend).value
        if project.graph_backend and project.graph_backend != configured:
            raise ConfigurationError(
                f"the tenant's graph is on {project.graph_backend}, but this worker is configured "
                f"for {configured}: it cannot drop it",
                details={"graph_backend": project.graph_backend, "configured": configured},
            )
        async with opened(self._backends(self.deps)) as impl:
            details = await impl.drop(project)
        await self.deps.credentials.delete(project.id, GRAPH_PASSWORD)
        await self.deps.store.update_project(project.id, graph_status=GraphStatus.DELETED)
        return StepResult(
            status=StepStatus.SUCCESS, details={**details, "credentials_deleted": [GRAPH_PASSWORD]},
        )


async def verify_graph(deps: Deps, project: Project) -> dict[str, Any]:
    """Check the tenant's graph with the backend it was created on (``project.graph_backend``).

    Args:
        deps: The worker's dependencies.
        project: The tenant's row; ``graph_backend`` says which implementation created it.

    Raises:
        VerificationFailed: The database does not answer the tenant's credentials as it should.
    """
    try:
        impl = backend_for(deps, project.graph_backend or GraphBackend.NONE)
    except StepSkipped as skipped:
        return {"backend": GraphBackend.NONE.value, "skipped": skipped.reason}
    async with opened(impl):
        return await impl.verify(project)
