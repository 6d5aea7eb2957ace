"""tenantflow's exceptions.

Foreign errors (psycopg, neo4j, httpx) are translated into these in one place per boundary;
the step mechanism (``activities.mirror``) turns them into Temporal ``ApplicationError``s, with
``non_retryable`` taken from the branch of the tree::

    TenantflowError
    ├── PermanentError          business / input / configuration errors: retrying cannot help
    │   ├── InvalidName         a name that would end up in SQL, Cypher or a URL is not acceptable
    │   ├── ConfigurationError  settings missing or contradictory for this step
    │   ├── ServiceRejected     an external API answered 4xx
    │   ├── DatabaseRejected    Postgres refused a statement (privilege, syntax, ...): has sqlstate
    │   ├── GraphDatabaseFailed the graph server reports the database as failed (e.g. quarantined)
    │   ├── VerificationFailed  a provisioned resource is not what it should be
    │   └── NotReady            the tenant's resource exists but is not usable yet (client factories)
    └── TransientError          outages: connection refused, timeouts, 5xx, 429 — Temporal retries
        ├── DatabaseUnavailable
        │   └── MirrorUnavailable   the mirror database (our own bookkeeping) is unreachable
        ├── ServiceUnavailable
        └── StillWaiting        a poll has not seen the expected state yet
"""

from __future__ import annotations

from typing import Any


class TenantflowError(Exception):
    """Base of every tenantflow error. ``details`` is JSON-safe and never holds a secret."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class PermanentError(TenantflowError):
    """Retrying will not help; the step fails non-retryably."""


class InvalidName(PermanentError):
    pass


class ConfigurationError(PermanentError):
    pass


class ServiceRejected(PermanentError):
    pass


class DatabaseRejected(PermanentError):
    pass


class GraphDatabaseFailed(PermanentError):
    pass


class VerificationFailed(PermanentError):
    pass


class NotReady(PermanentError):
    pass


class TransientError(TenantflowError):
    """An outage; Temporal retries the activity with its retry policy."""


class DatabaseUnavailable(TransientError):
    pass


class MirrorUnavailable(DatabaseUnavailable):
    pass


class ServiceUnavailable(TransientError):
    pass


class StillWaiting(TransientError):
    pass
