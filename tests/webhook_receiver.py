"""A completion-webhook receiver for tests: a real HTTP server on a free loopback port that records
every delivery (headers and raw body, in arrival order) and answers what the test scripts:
``fail_first`` deliveries get ``fail_status``, the rest ``status``, all with ``answer_headers``."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.ports import free_port
from standins.server import ThreadedServer
from tenantflow.standard_webhooks import generate_secret, verify

SECRET = generate_secret()


@dataclass(frozen=True)
class Delivery:
    """One POST as the receiver got it, and what it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)

    def verified(self, secret: str = SECRET) -> bool:
        """Whether the Standard Webhooks signature holds for this delivery under ``secret``."""
        verify(self.headers, self.body, secret=secret)
        return True


class Receiver:
    """``with Receiver(fail_first=1) as receiver:`` then point ``event_webhook_urls`` at ``receiver.url``."""

    def __init__(self, *, status: int = 204, fail_first: int = 0, fail_status: int = 500,
                 answer_headers: dict[str, str] | None = None) -> None:
        self.status, self.fail_first, self.fail_status = status, fail_first, fail_status
        self.answer_headers = answer_headers or {}
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._server = ThreadedServer(Starlette(routes=[Route("/hook", self._receive, methods=["POST"])]))
        self.url = f"{self._server.url}/hook"

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            answer = self.fail_status if len(self._deliveries) < self.fail_first else self.status
            self._deliveries.append(Delivery(dict(request.headers), body, answer))
        return Response(status_code=answer, headers=self.answer_headers)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def taken(self) -> list[Delivery]:
        """The deliveries answered 2xx: the events the receiver took."""
        return [d for d in self.deliveries if 200 <= d.answered < 300]

    def __enter__(self) -> Receiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


def dead_url() -> str:
    """A receiver that is down: nothing listens on this port (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/hook"
