"""Sections ``latency``, ``throughput``, ``burst`` and ``memory``: tenantflow through its API.

A run is timed from just before its ``POST /v1/projects`` to the moment the client sees ``online``,
found with the long poll ``GET /v1/projects/{id}?wait_for=online`` (answered by the API as soon as
the mirror's status changes), never by sleeping between polls. The long poll's answer carries the
step rows and the mirror's ``updated_at`` of the online write: the steps give the run's critical
path (the wall time during which at least one provisioning step ran, ``stats.covered_seconds``),
the mirror's time tells how much of the latency is the client's own delay in hearing about it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from bench.plan import Bench
from bench.report import Goal
from bench.stack import PROCESS_NAMES, cpu_used, megabytes, usage
from bench.stats import covered_seconds, kendall_tau, median, ms, percentile, spearman_rho

LONG_POLL_SECONDS = 60  # the API's longest wait_for
# A kept-alive connection the server closed just as it was reused fails the request: such a request
# is sent again (a POST too: the API answers a repeated name with the same tenant), this often.
CONNECTION_RETRIES = 3
DROPPED = (httpx.NetworkError, httpx.RemoteProtocolError)
LATENCY_GOAL = Goal(1.0)  # overhead p50 / local-activity anchor p50
THROUGHPUT_GOAL = Goal(0.4, at_most=False)  # projects/s / regular anchor runs/s
BURST_GOAL = Goal(0.5)  # POST → online p50 / makespan
MEMORY_GOAL = Goal(1.1)  # RSS at the end / after the first batch ("flat")


@dataclass
class Run:
    """One tenant provisioned through the API, as the client saw it (times: ``perf_counter``)."""

    name: str
    sent: float = 0.0
    sent_wall: float = 0.0
    answered: float | None = None
    http_status: int | None = None
    project_id: str | None = None
    created_at: datetime | None = None
    status: str = "not created"
    observed: float | None = None  # when the client saw it settled
    observed_wall: float = 0.0
    resent: int = 0  # requests sent again after a dropped connection
    online_at: datetime | None = None  # the mirror's updated_at of the online write
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def online(self) -> bool:
        return self.status == "online" and self.observed is not None

    @property
    def latency(self) -> float:
        assert self.observed is not None
        return self.observed - self.sent

    @property
    def provision_steps(self) -> list[dict[str, Any]]:
        return [s for s in self.steps if s.get("run_kind", "provision") == "provision"]

    @property
    def intervals(self) -> list[tuple[float, float]]:
        """(started, completed) of each provisioning step that ran (epoch seconds)."""
        return [(_ts(s["started_at"]), _ts(s["completed_at"])) for s in self.provision_steps
                if s.get("started_at") and s.get("completed_at")]

    @property
    def critical_path(self) -> float:
        """Seconds during which at least one provisioning step ran."""
        return covered_seconds(self.intervals)

    @property
    def steps_total(self) -> float:
        """The provisioning steps' durations added up (what the issue's table calls 'the step rows')."""
        return sum(end - start for start, end in self.intervals)

    @property
    def mirror_latency(self) -> float:
        """From just before the POST to the online write, by the mirror's clock (same machine)."""
        assert self.online_at is not None
        return self.online_at.timestamp() - self.sent_wall


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def api_client(bench: Bench, *, connections: int) -> httpx.AsyncClient:
    """A client of the stack's API with the stack's token, for ``connections`` requests at once."""
    return httpx.AsyncClient(
        base_url=bench.target.api_url, headers={"Authorization": f"Bearer {bench.target.api_token}"},
        timeout=httpx.Timeout(LONG_POLL_SECONDS + 30, connect=10),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def post(bench: Bench, api: httpx.AsyncClient, run: Run) -> None:
    """Create ``run``'s tenant; its fields say how the API answered (nothing is raised)."""
    run.sent_wall, run.sent = time.time(), time.perf_counter()
    try:
        response = await _send(run, partial(api.post, "/v1/projects", json={"name": run.name}))
    except httpx.HTTPError as exc:
        run.status = f"POST failed: {type(exc).__name__}"
        return
    run.answered, run.http_status = time.perf_counter(), response.status_code
    if response.status_code not in (200, 202):
        run.status = f"POST answered {response.status_code}: {response.text[:200]}"
        return
    body = response.json()
    run.project_id, run.status = body["id"], body["status"]
    run.created_at = datetime.fromisoformat(body["created_at"])
    bench.created.append(body["id"])


async def _send(run: Run, request: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """``request()``, sent again (at most ``CONNECTION_RETRIES`` times) when its connection drops."""
    for _ in range(CONNECTION_RETRIES):
        try:
            return await request()
        except DROPPED:
            run.resent += 1
    return await request()


async def wait_settled(api: httpx.AsyncClient, run: Run, *, deadline: float, wanted: str = "online") -> None:
    """Long-poll until the tenant is ``wanted`` or settled, or ``deadline`` (``perf_counter``) passes."""
    while run.project_id is not None and time.perf_counter() < deadline:
        wait = max(1, min(LONG_POLL_SECONDS, int(deadline - time.perf_counter())))
        try:
            response = await _send(run, partial(api.get, f"/v1/projects/{run.project_id}",
                                                params={"wait_for": wanted, "timeout": wait}))
        except httpx.HTTPError as exc:
            run.status = f"long poll failed: {type(exc).__name__}"
            return
        seen, seen_wall = time.perf_counter(), time.time()
        if response.status_code != 200:
            run.status = f"long poll answered {response.status_code}"
            return
        body = response.json()
        run.status = body["status"]
        if run.status in (wanted, "online", "failed", "deleted"):
            run.observed, run.observed_wall, run.steps = seen, seen_wall, body["steps"]
            run.online_at = datetime.fromisoformat(body["updated_at"]) if run.status == "online" else None
            return


async def provision(bench: Bench, api: httpx.AsyncClient, name: str, *, timeout: float = 300) -> Run:
    """POST a tenant and wait for it to settle."""
    run = Run(name)
    await post(bench, api, run)
    await wait_settled(api, run, deadline=time.perf_counter() + timeout)
    return run


async def provision_many(bench: Bench, api: httpx.AsyncClient, names: Iterable[str], *, in_flight: int,
                         on_done: Callable[[Run], None] | None = None) -> list[Run]:
    """Provision ``names``, ``in_flight`` at a time; ``on_done(run)`` after each settles."""
    gate = asyncio.Semaphore(in_flight)

    async def one(name: str) -> Run:
        async with gate:
            run = await provision(bench, api, name)
        if on_done is not None:
            on_done(run)
        return run

    return list(await asyncio.gather(*(one(n) for n in names)))


def _failures(bench: Bench, runs: list[Run]) -> list[Run]:
    """The runs that did not reach online (the first few are named), after saying how many
    requests had to be sent again."""
    resent = sum(r.resent for r in runs)
    if resent:
        bench.report.say(f"{resent} requests were sent again after their connection dropped "
                         f"({sum(1 for r in runs if r.resent)} tenants)")
    failed = [r for r in runs if not r.online]
    for r in failed[:5]:
        bench.report.say(f"NOT ONLINE  {r.name}: {r.status}")
    return failed


# ------------------------------------------------------------------------------------ sections
async def latency_section(bench: Bench) -> None:
    plan, report = bench.plan, bench.report
    report.section("latency", f"tenantflow POST → online, one at a time ({plan.latency_runs} runs after a "
                              "warm-up), against its critical path")
    async with api_client(bench, connections=2) as api:
        warm = await provision(bench, api, plan.tenant_name("warm"))
        if warm.online:
            bench.online_id = warm.project_id
        runs = [await provision(bench, api, plan.tenant_name(f"lat-{i}")) for i in range(plan.latency_runs)]
    done = [r for r in runs if r.online]
    if _failures(bench, runs) or not done:
        report.error(f"{len(runs) - len(done)} of {len(runs)} runs did not reach online")
    if not done:
        return
    bench.online_id = bench.online_id or done[0].project_id
    latency = [r.latency for r in done]
    path = [r.critical_path for r in done]
    overhead = [r.latency - r.critical_path for r in done]
    steps = max(len(r.provision_steps) for r in done)
    mirrored = [r for r in done if r.online_at is not None]
    rows = [
        ("POST → online seen by the client", latency),
        ("critical path (wall time with a step running)", path),
        ("step rows' durations added up", [r.steps_total for r in done]),
        ("overhead = latency − critical path (per run)", overhead),
        ("POST → online written in the mirror (updated_at)", [r.mirror_latency for r in mirrored]),
        ("client's delay: online written → seen", [r.observed_wall - r.online_at.timestamp()
                                                    for r in mirrored if r.online_at is not None]),
    ]
    for label, values in rows:
        if values:
            report.spread(label, values, width=52)
    report.say(f"overhead per step ({steps} steps): {ms(median(overhead) / max(steps, 1))}")
    report.record(runs=len(runs), online=len(done), steps=steps, **{
        f"{key}_{q}_ms": percentile(values, int(q[1:])) * 1000
        for key, values in (("latency", latency), ("critical_path", path), ("overhead", overhead),
                            ("mirror_latency", [r.mirror_latency for r in mirrored])) if values
        for q in ("p50", "p99")})
    local = bench.anchors.get("local_p50")
    report.ratio("overhead p50 / local-activity anchor p50", median(overhead) / local if local else None,
                 LATENCY_GOAL, missing="needs the anchors section")
    report.ratio("latency p50 / critical path p50 (the issue's 1.72)", median(latency) / median(path), None)


async def throughput_section(bench: Bench) -> None:
    plan, report = bench.plan, bench.report
    report.section("throughput", f"tenantflow, {plan.throughput_runs} projects, {plan.in_flight} in flight")
    names = [plan.tenant_name(f"tp-{i}") for i in range(plan.throughput_runs)]
    async with api_client(bench, connections=plan.in_flight + 2) as api:
        before = usage(bench.target.state_dir)
        runs = await provision_many(bench, api, names, in_flight=plan.in_flight)
        after = usage(bench.target.state_dir)
    done = [r for r in runs if r.online]
    if _failures(bench, runs) or not done:
        report.error(f"{len(runs) - len(done)} of {len(runs)} runs did not reach online")
    if not done:
        return
    wall = max(r.observed for r in done if r.observed) - min(r.sent for r in runs)
    per_second = len(done) / wall
    report.say(f"{len(done)} online in {wall:.1f} s: {per_second:.2f} projects/s; POST → online p50 "
               f"{ms(median(r.latency for r in done))}, p99 {ms(percentile((r.latency for r in done), 99))}")
    cpu = cpu_used(before, after)
    per_project = {name: seconds / len(done) for name, seconds in cpu.items() if seconds is not None}
    shown = [n for n in (*PROCESS_NAMES, "bench") if n in cpu]
    report.say("CPU per project: " + ", ".join(
        f"{n} {per_project[n]:.3f} s" if n in per_project else f"{n} n/a (restarted)" for n in shown))
    stack_total = sum(seconds for name, seconds in per_project.items() if name != "bench")
    report.say(f"CPU of the whole stack per project: {stack_total:.3f} s (bench: this process, the client)")
    if not cpu:
        report.say("no CPU figures: children.json of the state dir lists no running process")
    report.record(projects=len(runs), online=len(done), projects_per_s=per_second, wall_s=wall,
                  cpu_s_per_project=per_project)
    anchor = bench.anchors.get("regular_runs_per_s")
    report.ratio("projects/s / regular anchor runs/s", per_second / anchor if anchor else None,
                 THROUGHPUT_GOAL, missing="needs the anchors section")


async def burst_section(bench: Bench) -> None:
    plan, report = bench.plan, bench.report
    report.section("burst", f"{plan.burst} POSTs at once, then every tenant to online")
    runs = [Run(plan.tenant_name(f"burst-{i}")) for i in range(plan.burst)]
    async with api_client(bench, connections=plan.burst + 10) as api:
        await asyncio.gather(*(post(bench, api, r) for r in runs))
        answered = [r for r in runs if r.project_id is not None]
        post_times = [r.answered - r.sent for r in answered if r.answered is not None]
        report.say(f"POSTs answered with the tenant: {len(answered)} of {len(runs)}" + (
            f"; answer time p50 {ms(median(post_times))}, p99 {ms(percentile(post_times, 99))}, "
            f"max {ms(max(post_times))}" if post_times else ""))
        deadline = time.perf_counter() + max(600.0, plan.burst * 5.0)
        await asyncio.gather(*(wait_settled(api, r, deadline=deadline) for r in answered))
    done = [r for r in answered if r.online]
    if _failures(bench, runs) or not done:
        report.error(f"{len(runs) - len(done)} of {len(runs)} tenants did not reach online")
    if not done:
        return
    first_post = min(r.sent for r in runs)
    makespan = max(r.observed for r in done if r.observed) - first_post
    latencies = [r.latency for r in done]
    report.say(f"makespan (first POST → last online seen): {makespan:.1f} s; POST → online p50 "
               f"{median(latencies):.1f} s, p99 {percentile(latencies, 99):.1f} s")
    created = [r.created_at.timestamp() for r in done if r.created_at and r.online_at]
    online = [r.online_at.timestamp() for r in done if r.created_at and r.online_at]
    tau, rho = kendall_tau(created, online), spearman_rho(created, online)
    report.say(f"served in order? creation order against online order: Kendall tau {tau:.2f}, Spearman rho "
               f"{rho:.2f} (1: first come, first served; about 0: all served at once)")
    report.record(posts=len(runs), answered=len(answered), online=len(done),
                  post_p50_ms=median(post_times) * 1000 if post_times else None,
                  post_p99_ms=percentile(post_times, 99) * 1000 if post_times else None,
                  makespan_s=makespan, online_p50_s=median(latencies), kendall_tau=tau, spearman_rho=rho)
    report.ratio("POST → online p50 / makespan", median(latencies) / makespan, BURST_GOAL)


async def memory_section(bench: Bench) -> None:
    plan, report = bench.plan, bench.report
    over = f", over {plan.memory_runs} runs, {plan.in_flight} in flight" if plan.memory_runs else ""
    report.section("memory", f"RSS of the worker and the API (each with its child processes){over}")
    start = bench.usage_at_start
    series: list[tuple[int, dict[str, int]]] = []

    def sample(done: int) -> None:
        now = usage(bench.target.state_dir, include_self=False)
        series.append((done, {n: now[n].rss_bytes for n in ("worker", "api") if n in now}))
        rss = series[-1][1]
        report.say(f"after {done:>5} runs: " + ", ".join(f"{n} {megabytes(b)}" for n, b in rss.items()))

    if plan.memory_runs:
        finished = 0

        def on_done(_run: Run) -> None:
            nonlocal finished
            finished += 1
            if finished % plan.memory_every == 0:
                sample(finished)

        sample(0)
        names = [plan.tenant_name(f"mem-{i}") for i in range(plan.memory_runs)]
        async with api_client(bench, connections=plan.in_flight + 2) as api:
            runs = await provision_many(bench, api, names, in_flight=plan.in_flight, on_done=on_done)
        if _failures(bench, runs):
            report.error(f"{sum(1 for r in runs if not r.online)} of {len(runs)} runs did not reach online")
    now = usage(bench.target.state_dir, include_self=False)
    for name in ("worker", "api"):
        if name in start and name in now:
            same = start[name].root == now[name].root
            report.say(f"{name:<7} at the start {megabytes(start[name].rss_bytes)}, now "
                       f"{megabytes(now[name].rss_bytes)}" + ("" if same else " (restarted meanwhile)"))
    report.record(start_mb={n: u.rss_bytes / 2**20 for n, u in start.items() if n in ("worker", "api")},
                  end_mb={n: u.rss_bytes / 2**20 for n, u in now.items() if n in ("worker", "api")},
                  series=[{"runs": done, **{n: b / 2**20 for n, b in rss.items()}} for done, rss in series])
    if len(series) >= 3:
        for name in ("worker", "api"):
            warm, last = series[1][1].get(name), series[-1][1].get(name)
            report.ratio(f"{name} RSS at the end / after the first {plan.memory_every} runs",
                         last / warm if warm and last else None, MEMORY_GOAL)
    else:
        for name in ("worker", "api"):
            if name in start and name in now:
                growth = now[name].rss_bytes / start[name].rss_bytes
                report.ratio(f"{name} RSS now / at the start", growth, None)
        report.say(f"(flatness is judged by --memory-runs 1000: RSS sampled every {plan.memory_every} runs)")


async def cleanup(bench: Bench) -> None:
    """Delete the tenants this run created (``--cleanup``) and wait until they are deleted."""
    report = bench.report
    report.section("cleanup", f"deleting the {len(bench.created)} tenants this run created")
    async with api_client(bench, connections=12) as api:
        gate = asyncio.Semaphore(10)

        async def delete(project_id: str) -> str:
            async with gate:
                answer = await api.delete(f"/v1/projects/{project_id}")
                if answer.status_code not in (200, 202):
                    return f"DELETE answered {answer.status_code}"
                run = Run(project_id, project_id=project_id)
                await wait_settled(api, run, deadline=time.perf_counter() + 300, wanted="deleted")
                return run.status

        outcomes = await asyncio.gather(*(delete(p) for p in bench.created))
    deleted = sum(1 for o in outcomes if o == "deleted")
    report.say(f"{deleted} of {len(outcomes)} deleted")
    if deleted != len(outcomes):
        report.error(f"not deleted: {sorted(set(o for o in outcomes if o != 'deleted'))}")
