"""A small HTTP/1.1 load generator, the fallback when ``wrk`` cannot be had.

``python -m bench.loadgen URL --connections 10 --seconds 10 [--cpu 1]``: keeps each connection
busy with one GET after another (keep-alive, like ``wrk``) for the given time and prints one JSON
line: requests, non-2xx answers, connection errors, seconds, p50 and p99 latency. It runs in a
process of its own (pinned to ``--cpu`` when given) so the harness's event loop does not compete
with it. The ``Authorization`` header comes from ``BENCH_LOADGEN_AUTHORIZATION`` (secrets stay
off command lines). Slower per request than ``wrk``: the report says which one measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.stats import percentile

AUTHORIZATION_ENV = "BENCH_LOADGEN_AUTHORIZATION"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    non_2xx: int = 0
    errors: int = 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status and whether the server keeps the connection open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    return status, headers.get("connection", "").lower() != "close"


async def _connection(host: str, port: int, request: bytes, until: float, tally: Tally) -> None:
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(request)
            status, keep = await _read_response(reader)
            tally.latencies.append(time.perf_counter() - started)
            tally.non_2xx += not 200 <= status < 300
            if not keep:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            tally.errors += 1
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def run(url: str, *, connections: int, seconds: float, authorization: str = "") -> dict[str, float]:
    """Load ``url`` with ``connections`` keep-alive connections for ``seconds``; the figures."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode()
    tally = Tally()
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(_connection(host, port, request, until, tally) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies = tally.latencies or [float("nan")]
    return {"requests": len(tally.latencies), "non_2xx": tally.non_2xx, "errors": tally.errors,
            "seconds": elapsed, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cpu", type=int, default=None, help="run on this CPU only")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    figures = asyncio.run(run(args.url, connections=args.connections, seconds=args.seconds,
                              authorization=os.environ.get(AUTHORIZATION_ENV, "")))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
