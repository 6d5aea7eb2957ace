"""The tenant's graph database: the two graph steps and the platforms they run on.

Importers need only the step activities and the verification (``from activities.graph import
GraphActivities``); the layout inside the package follows the dependencies, bottom up::

    backend.py    the GraphBackendImpl protocol, GRAPH_PASSWORD, the shared polling and verify helpers
    neo4j.py      Neo4j self-managed (Enterprise: database per tenant; Community: label per tenant)
    arcadedb.py   ArcadeDB (database per tenant, created over HTTP, used over Bolt)
    aura_api.py   the Aura API v1 client (OAuth2 token cache, requests)
    aura.py       Neo4j Aura (an AuraDB instance per tenant), on aura_api
    steps.py      backend_for (settings.graph_backend → implementation), the step activities,
                  verify_graph

No module imports one above it, so there is no import cycle.
"""

from __future__ import annotations

from activities.graph.steps import GraphActivities, backend_for, verify_graph

__all__ = ["GraphActivities", "backend_for", "verify_graph"]
