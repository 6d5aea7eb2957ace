"""The graph steps: create the tenant's graph database, then wait until it is online.

The platform comes from ``settings.graph_backend``; each implementation of
:class:`activities.graph_backend.GraphBackendImpl` is imported only when configured::

    none      → both steps are skipped
    neo4j     → activities.graph_neo4j.Neo4jGraphBackend        (self-managed Enterprise / Community)
    arcadedb  → activities.graph_arcadedb.ArcadeDBGraphBackend  (database per tenant, Bolt + HTTP)
    aura      → activities.aura.AuraGraphBackend                (one AuraDB instance per tenant)

The steps keep ``projects.graph_status`` true: ``provisioning`` once the database is asked for,
``online`` once it answers, ``failed`` when the server reports it failed or it never came online.
The client factory (``tenantflow.graph_clients``) refuses tenants that are not ``online``.

Polling. Readiness is polled frequently inside one activity that heartbeats on every poll
(samples-python ``polling/frequent``), every ``graph_poll_interval_seconds`` (1 s by default),
giving up after ``graph_wait_timeout_seconds`` with a non-retryable ``GraphDatabaseFailed`` that
names the last status seen. A database normally comes online in well under a second (ArcadeDB)
to a few seconds (Neo4j; longer for a store copy in a cluster), so the wait is short and the
answer should be seen at once. The alternative, infrequent polling through activity retries with
``backoff_coefficient=1.0``, suits waits of many minutes; here it would add a failed attempt per
poll and make readiness as coarse as the retry interval. The heartbeat on every poll means a
worker that dies mid-wait is noticed after the heartbeat timeout, not after the step's 30-minute
start-to-close timeout, and Temporal starts the poll again elsewhere.

A failed status (``quarantined``, ``dirty``, ...) ends the poll at once, non-retryably: retrying
does not repair it. An outage during the poll (the graph server unreachable) is tolerated until
the deadline and then raised as the retryable error it is: a server that is down has not failed
the tenant's database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity

from activities.deps import Deps
from activities.graph.backend import GRAPH_PASSWORD, GraphBackendImpl
from activities.mirror import StepActivities, StepSkipped, step
from tenantflow.catalog import StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import GraphDatabaseFailed, PermanentError, TransientError, VerificationFailed
from tenantflow.graph_clients import graph_client_for
from tenantflow.models import Project, StepStatus
from tenantflow.settings import GraphBackend

GRAPH_PROVISIONING, GRAPH_ONLINE, GRAPH_FAILED = "provisioning", "online", "failed"

BackendFactory = Callable[[Deps], GraphBackendImpl]


def backend_for(deps: Deps, backend: str | None = None) -> GraphBackendImpl:
    """The implementation for ``backend`` (default: the configured one).

    Raises:
        StepSkipped: The backend is ``none``.
    """
    chosen = GraphBackend(backend or deps.settings.graph_backend)
    if chosen is GraphBackend.NEO4J:
        from activities.graph.neo4j import Neo4jGraphBackend

        return Neo4jGraphBackend(deps)
    if chosen is GraphBackend.ARCADEDB:
        from activities.graph.arcadedb import ArcadeDBGraphBackend

        return ArcadeDBGraphBackend(deps)
    if chosen is GraphBackend.AURA:
        from activities.graph.aura import AuraGraphBackend

        return AuraGraphBackend(deps)
    raise StepSkipped("graph_backend is 'none': tenants get no graph database")


@contextlib.asynccontextmanager
async def opened(impl: GraphBackendImpl) -> AsyncIterator[GraphBackendImpl]:
    """Close the backend's drivers and HTTP clients however the step ends."""
    try:
        yield impl
    finally:
        await impl.aclose()


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
        await self.deps.store.update_project(project.id, graph_status=GRAPH_PROVISIONING)
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
                await self.deps.store.update_project(project.id, graph_status=GRAPH_FAILED)
                raise
        await self.deps.store.update_project(project.id, graph_status=GRAPH_ONLINE)
        return StepResult(status=StepStatus.SUCCESS, details=details)


async def verify_graph(deps: Deps, project: Project) -> dict[str, Any]:
    """Check the tenant's graph with the backend it was created on (``project.graph_backend``).

    Raises:
        VerificationFailed: The database does not answer the tenant's credentials as it should.
    """
    try:
        impl = backend_for(deps, project.graph_backend or GraphBackend.NONE)
    except StepSkipped as skipped:
        return {"backend": GraphBackend.NONE.value, "skipped": skipped.reason}
    async with opened(impl):
        return await impl.verify(project)


async def verify_with_tenant_client(deps: Deps, project: Project) -> dict[str, Any]:
    """The tenant's own client (its credentials, its database or label) answers a query.

    Shared by the Bolt backends' ``verify``. Outages propagate (retryable); anything else that
    stops the query is a difference: ``VerificationFailed`` with the cause's details.
    """
    try:
        async with graph_client_for(project.id, store=deps.store, credentials=deps.credentials) as graph:
            answer = await graph.ping()
    except PermanentError as exc:
        raise VerificationFailed(
            f"the tenant's graph does not answer its own credentials: {exc.message}",
            details={"backend": project.graph_backend, "cause": type(exc).__name__, **exc.details},
        ) from exc
    return {"backend": project.graph_backend, "mode": project.graph_mode, **answer}


# ---------------------------------------------------------------------------- polling
@dataclass
class Poll:
    """What one poll saw: ``done`` when the wait is over; ``seen`` goes into heartbeats and the
    timeout message."""

    done: bool
    seen: str
    details: dict[str, Any] = field(default_factory=dict)


async def poll_until(
    check: Callable[[], Awaitable[Poll]], *, what: str, interval: float, timeout: float
) -> dict[str, Any]:
    """Call ``check`` every ``interval`` seconds, heartbeating each time, until it reports done.

    ``check`` raises ``GraphDatabaseFailed`` itself for a state that cannot recover. Outages
    (``TransientError``) are polled through; if the last poll before the deadline was one, it is
    raised (retryable), else ``GraphDatabaseFailed`` naming the last status seen.

    Returns:
        The final poll's details plus ``polls`` and ``elapsed_seconds``.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    polls = 0
    while True:
        polls += 1
        outage: TransientError | None = None
        try:
            result = await check()
        except TransientError as exc:
            outage, result = exc, Poll(False, f"unreachable ({exc.message})")
        elapsed = loop.time() - started
        activity.heartbeat({"waiting_for": what, "seen": result.seen, "polls": polls})
        if result.done:
            return {**result.details, "polls": polls, "elapsed_seconds": round(elapsed, 3)}
        if elapsed >= timeout:
            if outage is not None:
                raise outage
            raise GraphDatabaseFailed(
                f"{what} is not online after {elapsed:.1f}s (timeout {timeout:g}s, {polls} polls); "
                f"last status seen: {result.seen}",
                details={"last_status": result.seen, "polls": polls, "timeout_seconds": timeout},
            )
        await asyncio.sleep(min(interval, timeout - elapsed))
