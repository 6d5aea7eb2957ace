"""Push updates: a tenant's step and status changes as Server-Sent Events, and the long poll.

The mirror's triggers (migration 0004) append every change to ``project_events`` and NOTIFY
``tenantflow_events`` with the project id. Each API process keeps ONE listening connection
(``EventHub``) and wakes the streams waiting on that project; a stream then reads the new rows from
the table. The table, not the notification, is the source of truth: a notification only says "look
again", so one lost while the listener reconnects costs at most ``POLL_INTERVAL`` of delay, never
an event, and a client resuming with ``Last-Event-ID`` gets exactly the events after that id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator

import psycopg
from fastapi.sse import EventSourceResponse, ServerSentEvent, format_sse_event
from pydantic_core import to_json

from tenantflow.catalog import EVENTS_CHANNEL, SETTLED_STATUSES, EventKind
from tenantflow.models import Project
from tenantflow.store import Store

log = logging.getLogger(__name__)

# A stream re-reads the table at least this often even if no notification arrives.
POLL_INTERVAL = 5.0
# A quiet stream sends a comment this often, so proxies and clients see it is alive.
KEEPALIVE_INTERVAL = 15.0
# The listener's reconnect backoff while the mirror database is unreachable.
RECONNECT_BACKOFF = (0.5, 10.0)
# How many events one read returns; a longer history is sent in several reads.
BATCH = 200


class EventHub:
    """One ``LISTEN`` connection per process, fanned out to the waiters of each project."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self, project_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the project may have new events (clear it before each read)."""
        key, changed = str(project_id), asyncio.Event()
        self._waiters[key].add(changed)
        try:
            yield changed
        finally:
            self._waiters[key].discard(changed)
            if not self._waiters[key]:
                del self._waiters[key]

    async def _listen(self) -> None:
        delay, ceiling = RECONNECT_BACKOFF
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")  # a constant, not input
                    self.connected.set()
                    self._wake_all()  # whatever happened while we were not listening
                    delay = RECONNECT_BACKOFF[0]
                    async for notify in conn.notifies():
                        for changed in self._waiters.get(notify.payload, ()):
                            changed.set()
            except (psycopg.Error, OSError) as exc:
                log.warning("event listener lost the mirror database (%s); again in %.1f s",
                            type(exc).__name__, delay)
            self.connected.clear()
            self._wake_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, ceiling)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for changed in waiters:
                changed.set()


async def _changed_or_timeout(changed: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), timeout)


async def project_events(
    hub: EventHub, store: Store, project_id: uuid.UUID, *, after: int = 0
) -> AsyncIterator[ServerSentEvent]:
    """The project's events with an id above ``after`` as they happen, then one ``end`` event once
    every event is out and the tenant is settled (online, failed, deleted); a ``keepalive`` comment
    when nothing was sent for ``KEEPALIVE_INTERVAL``."""
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    with hub.subscribe(project_id) as changed:
        while True:
            changed.clear()  # before the read: a change during the read wakes the next wait
            batch = await store.events_after(project_id, after, limit=BATCH)
            for event in batch.events:
                assert event.id is not None
                after = event.id
                yield ServerSentEvent(id=str(event.id), event=event.kind, data=event.data)
            if batch.events:
                quiet_since = loop.time()
                continue
            if batch.status in SETTLED_STATUSES:
                yield ServerSentEvent(
                    event=EventKind.END, data={"project_id": str(project_id), "status": batch.status}
                )
                return
            if loop.time() - quiet_since >= KEEPALIVE_INTERVAL:
                yield ServerSentEvent(comment="keepalive")
                quiet_since = loop.time()
            await _changed_or_timeout(changed, min(POLL_INTERVAL, KEEPALIVE_INTERVAL))


def event_stream_response(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """The response that sends ``events``: a plain streaming response, so a client hanging up
    just cancels the generator (Starlette watches for the disconnect)."""

    async def encoded() -> AsyncIterator[bytes]:
        async for e in events:
            data = None if e.data is None else to_json(e.data).decode()
            yield format_sse_event(data_str=data, event=e.event, id=e.id, comment=e.comment)

    return EventSourceResponse(
        encoded(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def wait_for_status(
    hub: EventHub, store: Store, project: Project, wanted: str, *, timeout: float
) -> Project:
    """The project once its status is ``wanted`` or settled, or as it is after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    with hub.subscribe(project.id) as changed:
        while True:
            changed.clear()
            current = await store.get_project(project.id) or project
            remaining = deadline - asyncio.get_running_loop().time()
            if current.status == wanted or current.status in SETTLED_STATUSES or remaining <= 0:
                return current
            await _changed_or_timeout(changed, min(remaining, POLL_INTERVAL))
