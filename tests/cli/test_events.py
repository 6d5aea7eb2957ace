"""The CLI's reading of a tenant's event stream: the parser on a stream recorded from the real API
(``data/events_online.txt``: one project from ``pending`` to ``online``), and ``follow`` against
a stand-in server on a real port that drops connections, closes early, answers 503 or 404, and
records the ``Last-Event-ID`` each reconnection sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from cli.client import ApiClient
from cli.errors import NotAuthorized, NotFound, Unavailable, Unreachable
from cli.events import EventParser, ServerEvent, follow
from devstack.ports import free_port
from standins.server import ThreadedServer
from tenantflow.catalog import PROJECT_STEP_NAMES

RECORDED = (Path(__file__).parent / "data" / "events_online.txt").read_text()


def parse(text: str) -> list[ServerEvent]:
    parser = EventParser()
    return [e for line in text.splitlines() if (e := parser.feed(line)) is not None]


def recorded_blocks() -> list[str]:
    """The recorded stream's events, each as the server sent it (without the blank line)."""
    return [block for block in RECORDED.split("\n\n") if block]


# -------------------------------------------------------------------------------- parser
def test_the_recorded_stream_parses_into_every_event_in_order() -> None:
    events = parse(RECORDED)

    assert len(events) == 31 and events[-1].event == "end" and events[-1].id is None
    assert events[-1].json()["status"] == "online"
    assert [e.id for e in events[:-1]] == [str(i) for i in range(1, 31)]
    statuses = [e.json()["status"] for e in events if e.event == "status"]
    assert statuses == ["pending", "provisioning", "online"]
    last = {e.json()["step"]: e.json()["status"] for e in events if e.event == "step"}
    assert list(last) == list(PROJECT_STEP_NAMES)
    assert set(last.values()) == {"success", "skipped"}


def test_comments_multiline_data_retry_and_ids_follow_the_format() -> None:
    parser = EventParser()
    text = (": keepalive\n\n"  # a comment dispatches nothing
            "retry: 2500\nid: 7\nevent: step\ndata: {\"a\":\ndata:  1}\n\n"  # data lines joined by \n
            "id: 8\nevent: status\n\n"  # no data: not dispatched, but the id counts
            "data:x\n\n")  # no space after the colon, no event type
    events = [e for line in text.splitlines() if (e := parser.feed(line)) is not None]

    assert events == [ServerEvent("step", '{"a":\n 1}', "7"), ServerEvent("message", "x", None)]
    assert events[0].json() == {"a": 1}
    assert (parser.last_id, parser.retry_ms) == ("8", 2500)


def test_a_half_received_event_does_not_move_the_resume_point() -> None:
    parser = EventParser(last_id="29")
    for line in ["id: 30", "event: status", 'data: {"status": "online"}']:  # the connection drops here
        assert parser.feed(line) is None
    assert parser.last_id == "29", "resuming after 29 gets event 30 again, whole"


# ------------------------------------------------------------------------ reconnection
@dataclass
class StandIn:
    """Serves the recorded stream; each connection follows the next entry of ``plan``:
    ``("drop", n)`` sends n events and half of the next, then cuts the connection; ``("close", n)``
    sends n events and ends the response without ``end``; ``("status", code)`` answers that code;
    with no entry left, everything after ``Last-Event-ID``."""

    plan: list[tuple[str, int]] = field(default_factory=list)
    resumed_from: list[str | None] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()
        blocks = recorded_blocks()

        @app.get("/v1/projects/{ref}/events")
        async def events(ref: str, request: Request) -> Response:
            after = request.headers.get("last-event-id")
            self.resumed_from.append(after)
            action, n = self.plan.pop(0) if self.plan else ("all", len(blocks))
            if action == "status":
                return Response(f'{{"detail": "stand-in says {n}"}}', status_code=n,
                                media_type="application/json")
            start = int(after) if after else 0  # block i holds id i+1 (the last one, end, has none)

            async def body() -> AsyncIterator[bytes]:
                for block in blocks[start:start + n]:
                    yield (block + "\n\n").encode()
                    await asyncio.sleep(0)
                if action == "drop":
                    yield blocks[start + n].split("\nid:")[0].encode()  # event and data, no id, no blank line
                    await asyncio.sleep(0.05)
                    raise RuntimeError("connection cut")  # uvicorn aborts the response mid-body

            return StreamingResponse(body(), media_type="text/event-stream")

        return app


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, str]]:
    server = StandIn()
    with ThreadedServer(server.app()) as running:
        yield server, running.url


async def collect(url: str, *, max_failures: int = 5) -> list[ServerEvent]:
    async with ApiClient(url, "token") as client:
        return [e async for e in follow(client, "acme", reconnect_delay=0.01, max_failures=max_failures)]


async def test_a_dropped_connection_resumes_after_the_last_whole_event(stand_in: tuple[StandIn, str]) -> None:
    server, url = stand_in
    server.plan = [("drop", 10), ("close", 5), ("status", 503)]

    events = await collect(url)

    assert events == parse(RECORDED), "every event exactly once, in order, ended by end"
    assert server.resumed_from == [None, "10", "15", "15"]


async def test_a_stream_that_keeps_closing_early_gives_up(stand_in: tuple[StandIn, str]) -> None:
    server, url = stand_in
    server.plan = [("close", 0)] * 3

    with pytest.raises(Unreachable, match="closed the event stream of acme 3 times without an end"):
        await collect(url, max_failures=3)
    assert server.resumed_from == [None, None, None]


@pytest.mark.parametrize(("code", "error"), [(404, NotFound), (401, NotAuthorized)])
async def test_a_refused_stream_is_not_retried(
    stand_in: tuple[StandIn, str], code: int, error: type[Exception]
) -> None:
    server, url = stand_in
    server.plan = [("status", code)]

    with pytest.raises(error, match=f"HTTP {code}: stand-in says {code}"):
        await collect(url)
    assert server.resumed_from == [None]


async def test_an_api_unavailable_for_longer_than_the_retries_is_an_error(
    stand_in: tuple[StandIn, str]
) -> None:
    server, url = stand_in
    server.plan = [("status", 503)] * 4

    with pytest.raises(Unavailable, match="HTTP 503"):
        await collect(url, max_failures=4)


async def test_an_api_that_is_not_there_is_unreachable() -> None:
    with pytest.raises(Unreachable, match=r"cannot connect to the API at http://127\.0\.0\.1:\d+ \("):
        await collect(f"http://127.0.0.1:{free_port()}", max_failures=2)
