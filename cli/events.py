"""A tenant's event stream (``GET /v1/projects/{ref}/events``, server-sent events) as the CLI
reads it: parsed line by line, and followed across dropped connections.

The stream's contract: ``step`` events (a step row changed: status, attempt, error) and
``status`` events (the tenant's status changed), each with an increasing ``id``, in the order
they happened; a full replay when no ``Last-Event-ID`` is given; ``end`` (no id) once the stream
has caught up and the tenant is ``online``, ``failed`` or ``deleted``, then the server closes it;
a ``: keepalive`` comment every 15 s meanwhile.

A connection can drop at any moment (the API restarts, a proxy times out). ``follow`` connects
again with ``Last-Event-ID`` set to the last event it handed out, so nothing is missed and nothing
is seen twice; only several failed attempts in a row give up.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from cli.client import ApiClient, project_path
from cli.errors import CliError, Unavailable, Unreachable
from tenantflow.catalog import EventKind

RECONNECT_DELAY = 1.0  # seconds before reconnecting, unless the server sent ``retry:``
MAX_RECONNECT_DELAY = 10.0
MAX_FAILURES = 5  # attempts in a row that bring no event before ``follow`` gives up


@dataclass(frozen=True)
class ServerEvent:
    """One dispatched event: its type (``message`` when none was given), data and id."""

    event: str
    data: str
    id: str | None = None

    def json(self) -> dict[str, Any]:
        """The data, decoded (every event of the tenant stream carries a JSON object).

        Raises:
            CliError: the data is not a JSON object.
        """
        try:
            value = json.loads(self.data)
        except ValueError:
            raise CliError(f"the API sent a {self.event} event whose data is not JSON") from None
        if not isinstance(value, dict):
            raise CliError(f"the API sent a {self.event} event whose data is not a JSON object")
        return value


class EventParser:
    """The ``text/event-stream`` format (WHATWG HTML, "Server-sent events"), fed one line at a time.

    ``last_id`` is the id of the last event dispatched (not of a half-received one, so a
    reconnection never skips an event the connection lost midway); ``retry_ms`` the server's
    reconnection delay, if it sent one.
    """

    def __init__(self, *, last_id: str | None = None) -> None:
        self.last_id = last_id
        self.retry_ms: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        """Take one line (without its line ending); return the event a blank line completes."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # a comment: keepalive
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
        elif field == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None  # unknown fields are ignored, as the format says

    def _dispatch(self) -> ServerEvent | None:
        event_type, data, event_id = self._event or "message", self._data, self._id
        self._reset()
        if event_id is not None:
            self.last_id = event_id or None  # an empty id resets it
        if not data:  # no data: nothing to dispatch
            return None
        return ServerEvent(event=event_type, data="\n".join(data), id=event_id)


async def follow(
    client: ApiClient, ref: str, *, last_event_id: str | None = None,
    reconnect_delay: float = RECONNECT_DELAY, max_failures: int = MAX_FAILURES,
) -> AsyncGenerator[ServerEvent, None]:
    """Yield the events of tenant ``ref`` until the ``end`` event (included), reconnecting with
    ``Last-Event-ID`` whenever the connection drops or closes early.

    Args:
        client: the API.
        ref: the tenant's id or name.
        last_event_id: start after this event (None: from the tenant's first event).
        reconnect_delay: the first wait before reconnecting (doubled on each failure in a row).
        max_failures: connections in a row that may fail or close without an event.

    Raises:
        ApiError: the API refused the stream (404, 401...), or stayed unavailable.
        Unreachable: the API could not be reached ``max_failures`` times in a row.
    """
    parser = EventParser(last_id=last_event_id)
    failures = 0
    while True:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if parser.last_id is not None:
            headers["Last-Event-ID"] = parser.last_id
        error: CliError | None = None
        try:
            async with client.stream(project_path(ref, "events"), headers=headers) as response:
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    failures = 0
                    yield event
                    if event.event == EventKind.END:
                        return
        except (Unreachable, Unavailable) as exc:
            error = exc
        failures += 1  # dropped, refused, or closed by the server before its end
        if failures >= max_failures:
            raise error or Unreachable(f"the API closed the event stream of {ref} {failures} times "
                                       "without an end")
        delay = parser.retry_ms / 1000 if parser.retry_ms is not None else reconnect_delay
        await asyncio.sleep(min(delay * 2 ** (failures - 1), MAX_RECONNECT_DELAY))
        parser = EventParser(last_id=parser.last_id)  # a half-received event is dropped
