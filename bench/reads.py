"""Section ``reads``: ``GET /v1/projects/{id}`` against the yardstick, under the same load.

Both answer the same document for the same online tenant of this run (checked first, timestamps
compared as instants), then each gets ``connections`` connections for ``load_seconds`` (after a
one-second warm-up) from the same load generator on the same pinned CPU: req/s, p50, p99, and the
server's CPU per request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from bench.load import LoadGenerator, LoadResult, choose
from bench.plan import Bench
from bench.report import Goal
from bench.stack import cpu_used, recorded_children, usage
from bench.stats import ms
from bench.tenants import api_client, provision
from bench.yardstick import serve

RATE_GOAL = Goal(1.0, at_most=False)  # API req/s / yardstick req/s
P99_GOAL = Goal(1.5)  # API p99 / yardstick p99
WARMUP_SECONDS = 1.0


def comparable(document: Any, key: str = "") -> Any:
    """``document`` with its timestamps (keys ending in ``_at``) as instants, for comparison."""
    if isinstance(document, dict):
        return {k: comparable(v, k) for k, v in document.items()}
    if isinstance(document, list):
        return [comparable(v) for v in document]
    if key.endswith("_at") and isinstance(document, str):
        return datetime.fromisoformat(document).timestamp()
    return document


async def _online_tenant(bench: Bench) -> str | None:
    if bench.online_id is None:
        async with api_client(bench, connections=2) as api:
            run = await provision(bench, api, bench.plan.tenant_name("read"))
        if run.online:
            bench.online_id = run.project_id
    return bench.online_id


async def reads_section(bench: Bench) -> None:
    plan, report, target = bench.plan, bench.report, bench.target
    report.section("reads", f"GET /v1/projects/{{id}}, {plan.connections} connections, {plan.load_seconds:g} "
                            "s, against the yardstick (plain FastAPI + psycopg-pool, one query)")
    project_id = await _online_tenant(bench)
    if project_id is None:
        report.error("no online tenant to read: provisioning one failed")
        return
    api_pid = recorded_children(target.state_dir).get("api")
    generator = choose(plan.load_generator, api_pid=api_pid, say=report.say)
    report.say(f"load: {generator.describe()}")
    auth = f"Bearer {target.api_token}"
    with serve(target) as yardstick:
        path = f"/v1/projects/{project_id}"
        ours = httpx.get(target.api_url + path, headers={"Authorization": auth}, timeout=10).json()
        theirs = httpx.get(yardstick.url + path, headers={"Authorization": auth}, timeout=10).json()
        same = comparable(ours) == comparable(theirs)
        report.say(f"the yardstick answers the same document as the API: {'yes' if same else 'NO'}")
        if not same:
            report.say(f"API:       {ours}")
            report.say(f"yardstick: {theirs}")
        api = _measure(bench, generator, target.api_url + path, auth, "API", api_pid)
        stick = _measure(bench, generator, yardstick.url + path, auth, "yardstick", yardstick.pid)
    report.record(same_document=same, load_generator=generator.describe())
    report.ratio("API req/s / yardstick req/s",
                 api.per_second / stick.per_second if stick.per_second else None, RATE_GOAL)
    report.ratio("API p99 / yardstick p99", api.p99 / stick.p99 if stick.p99 else None, P99_GOAL)


def _measure(bench: Bench, generator: LoadGenerator, url: str, auth: str, name: str,
             pid: int | None) -> LoadResult:
    plan, report = bench.plan, bench.report
    generator.run(url, authorization=auth, connections=plan.connections, seconds=WARMUP_SECONDS)
    watched = {name: pid} if pid else {}
    before = usage(bench.target.state_dir, include_self=False, extra=watched)
    result = generator.run(url, authorization=auth, connections=plan.connections, seconds=plan.load_seconds)
    used = cpu_used(before, usage(bench.target.state_dir, include_self=False, extra=watched))
    per_request = {k: v / result.requests for k, v in used.items() if v is not None and result.requests}
    cpu_per_request, postgres = per_request.get(name), per_request.get("postgres")
    report.say(f"{name:<10} {result.per_second:7.1f} req/s   p50 {ms(result.p50):>8}   "
               f"p99 {ms(result.p99):>8}   ({result.requests} requests" + (
                   f"; CPU per request: server {ms(cpu_per_request)}" if cpu_per_request is not None else "")
               + (f", Postgres {ms(postgres)}" if postgres is not None else "") + ")")
    if result.failed:
        report.error(f"{name}: {result.failed} requests failed (not 2xx, or connection errors)")
    report.record(**{name.lower(): {"req_per_s": result.per_second, "p50_ms": result.p50 * 1000,
                                    "p99_ms": result.p99 * 1000, "requests": result.requests,
                                    "failed": result.failed,
                                    "server_cpu_ms_per_request": cpu_per_request and cpu_per_request * 1000,
                                    "postgres_cpu_ms_per_request": postgres and postgres * 1000}})
    return result
