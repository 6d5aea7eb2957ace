"""Benchmark: provision N projects through a running dev stack and print the figures.

    scripts/dev &                                   # in another terminal
    .venv/bin/python scripts/bench_provision.py -n 40 -c 10

Prints POST→online latency (p50/p95/max) and throughput, and the RSS of the stack's processes.
Projects are named ``bench-<random>-<i>``; they stay in the dev stack like any other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


async def provision_one(api: httpx.AsyncClient, name: str, poll: float) -> tuple[float, str]:
    started = time.perf_counter()
    created = await api.post("/v1/projects", json={"name": name})
    created.raise_for_status()
    pid = created.json()["id"]
    while True:
        status = (await api.get(f"/v1/projects/{pid}")).json()["status"]
        if status in ("online", "failed"):
            return time.perf_counter() - started, status
        await asyncio.sleep(poll)


async def run(args: argparse.Namespace) -> None:
    token = json.loads((Path(args.state_dir) / "secrets.json").read_text())["api_token"]
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    gate = asyncio.Semaphore(args.concurrency)
    async with httpx.AsyncClient(base_url=args.api, headers={"Authorization": f"Bearer {token}"},
                                 timeout=60) as api:

        async def one(i: int) -> tuple[float, str]:
            async with gate:
                return await provision_one(api, f"{prefix}-{i}", args.poll)

        started = time.perf_counter()
        results = await asyncio.gather(*[one(i) for i in range(args.count)])
        wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    failed = sum(1 for r in results if r[1] != "online")
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    print(f"projects: {args.count}, concurrency {args.concurrency}, failed: {failed}")
    print(f"POST->online: p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s, "
          f"max {latencies[-1]:.2f} s")
    print(f"throughput: {args.count / wall:.2f} projects/s ({wall:.1f} s wall)")
    rss = subprocess.run(["ps", "-eo", "rss=,args="], capture_output=True, text=True).stdout
    for line in rss.splitlines():
        kb, _, cmd = line.strip().partition(" ")
        for label, needle in (("temporal", "temporal server start-dev"), ("arcadedb", "ArcadeDBServer"),
                              ("worker", "worker.py"), ("api", "uvicorn"), ("platform", "standins.platform")):
            if needle in cmd:
                print(f"rss {label:9} {int(kb) / 1024:7.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-n", "--count", type=int, default=20)
    parser.add_argument("-c", "--concurrency", type=int, default=5)
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--state-dir", default=str(ROOT / ".tenantflow" / "dev"))
    parser.add_argument("--poll", type=float, default=0.05, help="status poll interval (s)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
