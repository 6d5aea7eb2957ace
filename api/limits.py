"""Bounded input: a request body larger than ``api_max_body_bytes`` is refused with 413 before
anything reads it (authentication, JSON parsing, the webhook's signature check).

A pure ASGI middleware, outermost, so it sees the request first: a declared ``Content-Length`` over
the limit is answered at once without reading the body; a chunked body is counted as it arrives and
cut off at the limit. Either way the app never holds more than the limit in memory.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Refuse request bodies over the settings' ``api_max_body_bytes`` (413) and a malformed
    ``Content-Length`` (400). The limit comes from the app's settings (set by its lifespan)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = scope["app"].state.settings.api_max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, "malformed Content-Length header")
                return
            if int(declared) > limit:
                await _answer(send, 413, _too_large(limit))
                return
        received = 0
        started = answered = False

        async def counted_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now and tell the app the client went away, so it stops reading.
                    # (An exception would not do: FastAPI turns errors while reading into 400.)
                    if not started and not answered:
                        answered = True
                        await _answer(send, 413, _too_large(limit))
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # whatever the app says after our 413 has no one to go to
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, watched_send)


def _too_large(limit: int) -> str:
    return f"request body too large: at most {limit} bytes"


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})
