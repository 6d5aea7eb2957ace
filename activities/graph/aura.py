"""Neo4j Aura as a graph backend: one AuraDB instance per tenant, through the Aura API v1.

:class:`AuraGraphBackend` implements :class:`activities.graph.backend.GraphBackendImpl` on the HTTP
client in ``activities.graph.aura_api`` (token, requests; its errors come from the project's one
HTTP boundary, ``tenantflow.http_errors``: outages are retryable ``ServiceUnavailable``, Aura's
4xx are permanent ``ServiceRejected`` carrying Aura's message, status, reason and field, and
refused client credentials are a ``ConfigurationError``). None of them ever holds the client
secret, a token or a password.

Never two instances. ``POST /v1/instances`` is not idempotent and Aura bills per instance, so
``create``:

1. names the instance deterministically from the project (:func:`instance_name`);
2. if the project row records an instance, GETs it and adopts it (its password was stored before
   the row was written, see 4);
3. otherwise lists the tenant's instances and looks for that name. A live instance found this way
   was created by an attempt that crashed before recording it, so its password — shown by Aura
   only once — is lost. Nobody can have connected to it (the password never left that attempt), so
   it holds no data: it is deleted, and the step waits until it is gone before creating anew (the
   free tier allows one instance; a destroying instance still counts);
4. POSTs, then stores the password encrypted, then writes the instance onto the project row, in
   that order and in the same activity call. "Row names an instance" therefore implies "its
   password is stored"; a crash between the two leaves the row empty, and 3 cleans up.

The client never repeats the POST after a 5xx or a lost response (Aura may have acted); the next
attempt of the step finds the instance by name (3). Only a 429 that says when is repeated: Aura
did nothing. One attempt of a step runs at a time (Temporal), which is what makes
list-then-create safe.

Deleted exactly once. ``drop`` deletes the recorded instance and any live instance carrying the
project's name (an orphan of a crashed ``create``), each only if a GET shows it neither
``destroying`` nor gone: a retried step after a crash that followed the DELETE sees the instance
``destroying`` and sends no second DELETE. It then polls (``poll_until``, a heartbeat per poll)
until every one answers 404 or ``destroyed``; an instance that is gone already is success. A
DELETE answered 409 (Aura does not delete an instance in some states, e.g. while it is being
created) is retryable ``StillWaiting``: a later attempt finds it deletable. A deletion outlasting
``aura_poll_timeout_seconds`` is ``StillWaiting`` too: Temporal retries, and the retry only polls.

The backend records the instance on the project row; ``projects.graph_status`` is kept by the
steps in ``activities.graph.steps``; ``activities.graph.backend.poll_until`` runs the readiness poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from temporalio import activity

from activities.deps import Deps
from activities.graph.aura_api import SERVICE, AuraClient
from activities.graph.backend import GRAPH_PASSWORD, Poll, poll_until
from tenantflow.errors import (
    ConfigurationError,
    GraphDatabaseFailed,
    ServiceRejected,
    ServiceUnavailable,
    StillWaiting,
    VerificationFailed,
)
from tenantflow.models import Project
from tenantflow.rate_budget import RateBudget

log = logging.getLogger(__name__)

RUNNING = "running"
GONE_STATUSES = frozenset({"destroying", "destroyed"})
DESTROYED = "destroyed"
GONE = "gone"  # what we call an instance Aura answers 404 for
NAME_PREFIX = "tf-"
NAME_MAX = 30  # Aura's limit on instance names
GRAPH_DATABASE = "neo4j"  # every Aura instance serves its data from the default database
GRAPH_MODE = "instance-per-tenant"  # projects.graph_mode: the tenant owns a whole instance


# --------------------------------------------------------------------------- backend
def instance_name(project: Project) -> str:
    """The Aura instance name of a project: ``tf-`` + the first 27 hex digits of its id (30 chars).

    Deterministic, so a retried step finds what an earlier attempt created. Project ids are
    uuid4: those 27 digits hold about 100 random bits (less the version and variant digits), so
    two projects of one Aura tenant never share a name in practice.
    """
    return (NAME_PREFIX + project.id.hex)[:NAME_MAX]


def http_uri(connection_url: str) -> str:
    """``neo4j+s://host[:port]`` → ``https://host`` (where Aura serves the Query API)."""
    host = urlsplit(connection_url).hostname
    if not host:
        raise ServiceUnavailable(
            "Aura returned an instance without a usable connection_url",
            details={"service": SERVICE, "operation": "create instance"},
        )
    return f"https://{host}"


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


def aura_budget(deps: Deps) -> RateBudget:
    """The Aura account's request budget, shared by every worker through the mirror database."""
    s = deps.settings
    return RateBudget(deps.store.engine, f"aura:{s.aura_client_id}", limit=s.aura_rate_limit_requests,
                      window_seconds=s.aura_rate_limit_window_seconds)


class AuraGraphBackend:
    """``GraphBackendImpl`` for Neo4j Aura: an AuraDB instance per tenant."""

    def __init__(self, deps: Deps, *, client: AuraClient | None = None) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.client = client or AuraClient(deps.settings, budget=aura_budget(deps))

    async def aclose(self) -> None:
        await self.client.aclose()

    # --------------------------------------------------------------------- create
    async def create(self, project: Project) -> dict[str, Any]:
        """Find or create the project's instance (never two); store its password and row fields."""
        tenant = self.settings.aura_tenant_id
        if not tenant:
            raise ConfigurationError("graph_backend=aura needs TENANTFLOW_AURA_TENANT_ID")
        name = instance_name(project)
        if project.graph_instance_id:
            found = await self.client.get_instance(project.graph_instance_id)
            if found is not None and found.get("status") not in GONE_STATUSES:
                return await self._adopt(project, found)
            log.warning("Aura instance %s of project %s is gone; creating a new one",
                        project.graph_instance_id, project.id)
            await self.deps.store.update_project(project.id, graph_instance_id=None)
        replaced = await self._clear_name(tenant, name)
        return await self._create_new(project, tenant, name, replaced)

    async def _adopt(self, project: Project, found: dict[str, Any]) -> dict[str, Any]:
        if await self.deps.credentials.find(project.id, GRAPH_PASSWORD) is None:
            # The row is written only after the password; without it something else went wrong,
            # and the instance may hold data: an operator decides, we delete nothing.
            raise GraphDatabaseFailed(
                f"Aura instance {found.get('id')} is recorded for this project but its password is "
                "not in the credential store; an operator must delete the instance or restore the "
                "credential before retrying",
                details={"service": SERVICE, "instance_id": found.get("id")},
            )
        return {"backend": "aura", "instance_id": found.get("id"), "instance_name": found.get("name"),
                "status": found.get("status"), "created": False, "replaced_instances": []}

    async def _clear_name(self, tenant: str, name: str) -> list[str]:
        """Delete instances named ``name`` (orphans of a crashed attempt) and wait until they are gone.

        Returns the ids of the instances it deleted.
        """
        deleted: list[str] = []
        deadline = time.monotonic() + self.settings.aura_poll_timeout_seconds
        while True:
            same = [i for i in await self.client.list_instances(tenant) if i.get("name") == name]
            if not same:
                return deleted
            for inst in same:
                if inst["id"] in deleted or await self._status(inst) in GONE_STATUSES:
                    continue
                log.warning(
                    "Aura instance %s (%s) was created by an attempt that crashed before storing "
                    "its password; deleting it so a new one can be created", inst["id"], name,
                )
                try:
                    await self.client.delete_instance(inst["id"])
                except ServiceRejected as exc:
                    if exc.details.get("status") != 409:
                        raise
                    continue  # not deletable in its current state yet (e.g. still creating)
                deleted.append(inst["id"])
            _heartbeat({"waiting_for_deletion": [i["id"] for i in same]})
            if time.monotonic() >= deadline:
                raise StillWaiting(
                    f"Aura instance(s) {', '.join(i['id'] for i in same)} named {name} are still "
                    f"being destroyed after {self.settings.aura_poll_timeout_seconds:g}s",
                    details={"service": SERVICE, "instance_ids": [i["id"] for i in same]},
                )
            await asyncio.sleep(self.settings.aura_poll_interval_seconds)

    async def _status(self, listed: dict[str, Any]) -> str:
        """Status of a listed instance (the list may omit it: then GET; gone if unknown)."""
        if listed.get("status"):
            return str(listed["status"])
        found = await self.client.get_instance(listed["id"])
        return "destroyed" if found is None else str(found.get("status"))

    async def _create_new(
        self, project: Project, tenant: str, name: str, replaced: list[str]
    ) -> dict[str, Any]:
        s = self.settings
        created = await self.client.create_instance({
            "name": name, "version": s.aura_version, "region": s.aura_region, "memory": s.aura_memory,
            "type": s.aura_type, "tenant_id": tenant, "cloud_provider": s.aura_cloud_provider,
        })
        instance_id = str(created.get("id") or "")
        password = created.pop("password", None)
        if not instance_id or not password or not created.get("connection_url"):
            raise ServiceUnavailable(
                "Aura created an instance but its answer lacks id, connection_url or password",
                details={"service": SERVICE, "operation": "create instance", "instance_id": instance_id},
            )
        uri = str(created["connection_url"])
        https = http_uri(uri)
        # Password first, row second: a row naming an instance promises its password is stored.
        await self.deps.credentials.put(project.id, GRAPH_PASSWORD, str(password))
        await self.deps.store.update_project(
            project.id, graph_backend="aura", graph_mode=GRAPH_MODE, graph_database=GRAPH_DATABASE,
            graph_instance_id=instance_id, graph_uri=uri, graph_http_uri=https,
            graph_username=str(created.get("username") or "neo4j"),
        )
        log.info("created Aura instance %s (%s) for project %s", instance_id, name, project.id)
        return {"backend": "aura", "instance_id": instance_id, "instance_name": name,
                "status": created.get("status"), "created": True, "replaced_instances": replaced}

    # ----------------------------------------------------------------------- drop
    async def drop(self, project: Project) -> dict[str, Any]:
        """Delete the project's instance(s), each at most once, and wait until they are gone."""
        tenant = self.settings.aura_tenant_id
        if not tenant:
            raise ConfigurationError("graph_backend=aura needs TENANTFLOW_AURA_TENANT_ID")
        name = instance_name(project)
        ids = [project.graph_instance_id] if project.graph_instance_id else []
        ids += [str(i["id"]) for i in await self.client.list_instances(tenant)
                if i.get("name") == name and i.get("id") not in ids]
        deleted = [i for i in ids if await self._delete_once(i)]

        async def check() -> Poll:
            left = {i: s for i in ids if (s := await self._status_of(i)) not in (GONE, DESTROYED)}
            seen = ", ".join(f"{i} {s}" for i, s in left.items()) or "gone"
            return Poll(not left, seen, {"backend": "aura", "instance_ids": ids, "deleted": deleted})

        return await poll_until(
            check, what=f"Aura instance(s) of {name}", goal="gone", gave_up=StillWaiting,
            interval=self.settings.aura_poll_interval_seconds,
            timeout=self.settings.aura_poll_timeout_seconds,
        )

    async def _delete_once(self, instance_id: str) -> bool:
        """DELETE the instance unless it is destroying or gone already; True if this call sent it."""
        if await self._status_of(instance_id) in (*GONE_STATUSES, GONE):
            return False
        try:
            return await self.client.delete_instance(instance_id)
        except ServiceRejected as exc:
            if exc.details.get("status") != 409:
                raise
            raise StillWaiting(
                f"Aura does not delete instance {instance_id} in its current state yet",
                details={"service": SERVICE, "instance_id": instance_id},
            ) from exc

    async def _status_of(self, instance_id: str) -> str:
        found = await self.client.get_instance(instance_id)
        return GONE if found is None else str(found.get("status"))

    # ---------------------------------------------------------------- wait_online
    async def wait_online(self, project: Project) -> dict[str, Any]:
        """Poll the instance until ``running`` (``activities.graph.backend.poll_until``: a heartbeat per
        poll, ``GraphDatabaseFailed`` naming the last status after ``aura_poll_timeout_seconds``);
        fails at once when the instance is destroying or gone."""
        instance_id = self._recorded_instance(project)

        async def check() -> Poll:
            found = await self.client.get_instance(instance_id)
            status = "gone" if found is None else str(found.get("status"))
            if found is None or status in GONE_STATUSES:
                raise GraphDatabaseFailed(
                    f"Aura instance {instance_id} is {status}; it will not come online",
                    details={"service": SERVICE, "instance_id": instance_id, "last_status": status},
                )
            return Poll(status == RUNNING, status,
                        {"backend": "aura", "instance_id": instance_id, "status": status})

        return await poll_until(
            check, what=f"Aura instance {instance_id}",
            interval=self.settings.aura_poll_interval_seconds,
            timeout=self.settings.aura_poll_timeout_seconds,
        )

    # --------------------------------------------------------------------- verify
    async def verify(self, project: Project) -> dict[str, Any]:
        """Aura reports the instance running and its password is stored.

        A query with the tenant's credentials (Bolt or the Query API at ``graph_http_uri``) is
        what a real check would add; the emulator serves no database, so it is not done here.
        """
        instance_id = self._recorded_instance(project)
        found = await self.client.get_instance(instance_id)
        status = "gone" if found is None else str(found.get("status"))
        if status != RUNNING:
            raise VerificationFailed(f"Aura instance {instance_id} is {status}, not running",
                                     details={"service": SERVICE, "instance_id": instance_id,
                                              "status": status})
        if await self.deps.credentials.find(project.id, GRAPH_PASSWORD) is None:
            raise VerificationFailed(f"no graph password stored for Aura instance {instance_id}",
                                     details={"service": SERVICE, "instance_id": instance_id})
        return {"backend": "aura", "instance_id": instance_id, "status": status}

    def _recorded_instance(self, project: Project) -> str:
        if not project.graph_instance_id:
            raise GraphDatabaseFailed(
                f"no Aura instance is recorded for project {project.id}; create_graph_database "
                "has not succeeded", details={"service": SERVICE},
            )
        return project.graph_instance_id

