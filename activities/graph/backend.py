"""The interface every graph platform implements (Neo4j self-managed, ArcadeDB, Aura).

``activities.graph`` picks the implementation from ``settings.graph_backend`` and calls it from
the two step activities. Implementations record what deletion and the client factory need on the
project row (backend, database name, mode, uri, username, instance id, status) and keep every
password in the credential store; they return only JSON-safe details without secrets.
"""

from __future__ import annotations

from typing import Any, Protocol

from tenantflow.graph_clients import GRAPH_PASSWORD
from tenantflow.models import Project

__all__ = ["GRAPH_PASSWORD", "GraphBackendImpl"]


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

    async def aclose(self) -> None: ...
