"""The interface every graph platform implements (Neo4j self-managed, ArcadeDB, Aura), and the
helpers they share.

``activities.graph.steps`` picks the implementation from ``settings.graph_backend`` and calls it
from the two step activities. Implementations record what deletion and the client factory need on
the project row (backend, database name, mode, uri, username, instance id, status) and keep every
password in the credential store; they return only JSON-safe details without secrets.

This module imports no implementation and no step: the backends import it, never the reverse,
so the package has no import cycle.

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
from typing import Any, Protocol

from temporalio import activity

from activities.deps import Deps
from tenantflow.errors import (
    GraphDatabaseFailed,
    PermanentError,
    TenantflowError,
    TransientError,
    VerificationFailed,
)
from tenantflow.graph_clients import GRAPH_PASSWORD, graph_client_for
from tenantflow.models import Project

__all__ = ["GRAPH_PASSWORD", "GraphBackendImpl", "Poll", "opened", "poll_until",
           "verify_with_tenant_client"]


class GraphBackendImpl(Protocol):
    async def create(self, project: Project) -> dict[str, Any]:
        """Create the tenant's database (idempotent: a retried or resumed run creates nothing
        twice), store its credentials encrypted, record it on the project row."""
        ...

    async def wait_online(self, project: Project) -> dict[str, Any]:
        """Poll until the database is online, heartbeating each poll; give up after the
        configured timeout with a ``GraphDatabaseFailed`` that says what was last seen."""
        ...

    async def verify(self, project: Project) -> dict[str, Any]:
        """Check the database answers a query with the tenant's own credentials."""
        ...

    async def drop(self, project: Project) -> dict[str, Any]:
        """Delete the tenant's database and whatever else ``create`` made on the server (users,
        roles, registry entries), idempotently: what is gone already counts as dropped, and a
        tenant whose ``create`` never ran or never finished is dropped as far as it got. Waits
        until the platform reports it gone. The credential store and the row's status are the
        step's business, not the backend's."""
        ...

    async def aclose(self) -> None: ...


@contextlib.asynccontextmanager
async def opened(impl: GraphBackendImpl) -> AsyncIterator[GraphBackendImpl]:
    """Close the backend's drivers and HTTP clients however the step ends."""
    try:
        yield impl
    finally:
        await impl.aclose()


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
    check: Callable[[], Awaitable[Poll]], *, what: str, interval: float, timeout: float,
    goal: str = "online", gave_up: type[TenantflowError] = GraphDatabaseFailed,
) -> dict[str, Any]:
    """Call ``check`` every ``interval`` seconds, heartbeating each time, until it reports done.

    ``check`` raises ``GraphDatabaseFailed`` itself for a state that cannot recover. Outages
    (``TransientError``) are polled through; if the last poll before the deadline was one, it is
    raised (retryable), else ``gave_up`` (``GraphDatabaseFailed`` unless given) naming the last
    status seen. ``goal`` is what the message says was not reached (``online``, ``gone``).

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
            raise gave_up(
                f"{what} is not {goal} after {elapsed:.1f}s (timeout {timeout:g}s, {polls} polls); "
                f"last status seen: {result.seen}",
                details={"last_status": result.seen, "polls": polls, "timeout_seconds": timeout},
            )
        await asyncio.sleep(min(interval, timeout - elapsed))
