"""Section ``anchors``: what bare Temporal costs on this machine, against the stack's own server.

A worker inside this process (its own task queue, ``bench-anchor-<run id>``) runs the workflows of
``bench.anchor_workflows``: nine no-op activities in a row. Measured: (a) regular activities, one
run at a time (p50, p99) and ``in_flight`` runs at a time (runs/s, with the Temporal server's and
this process's CPU per run); (b) the same nine as local activities, one at a time, started normally
and with ``request_eager_start=True`` (the first workflow task handed back in the start's answer).
The later sections' ratios divide by these figures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from temporalio.client import Client
from temporalio.worker import Worker

from bench.anchor_workflows import STEPS, AnchorInput, NineSteps, noop
from bench.plan import Bench
from bench.stack import cpu_used, usage
from bench.stats import median, ms, percentile

WARMUP_RUNS = 2


async def _one_run(client: Client, workflow_id: str, task_queue: str, *, local: bool,
                   eager: bool = False) -> tuple[float, bool]:
    """Seconds from the start request to the result, and whether the start was eager."""
    started = time.perf_counter()
    handle = await client.start_workflow(NineSteps.run, AnchorInput(local), id=workflow_id,
                                         task_queue=task_queue, request_eager_start=eager)
    result = await handle.result()
    assert result.steps_run == STEPS
    return time.perf_counter() - started, bool(getattr(handle, "__temporal_eagerly_started", False))


# Starts the i-th run of one kind and waits for it: (seconds, started eagerly).
StartRun = Callable[[int], Awaitable[tuple[float, bool]]]


async def _one_at_a_time(runs: int, run: StartRun) -> tuple[list[float], int]:
    """Latencies of ``runs`` runs one after another (after a warm-up), and how many were eager."""
    for i in range(WARMUP_RUNS):
        await run(-1 - i)
    results = [await run(i) for i in range(runs)]
    return [seconds for seconds, _ in results], sum(1 for _, eager in results if eager)


async def anchors_section(bench: Bench) -> None:
    plan, report = bench.plan, bench.report
    task_queue = f"bench-anchor-{plan.run_id}"
    report.section("anchors", f"bare Temporal, {STEPS} no-op activities in one workflow "
                              f"(worker in this process, task queue {task_queue})")
    client = await Client.connect(bench.target.temporal_address)
    worker = Worker(client, task_queue=task_queue, workflows=[NineSteps], activities=[noop])
    async with worker:
        def runner(tag: str, *, local: bool, eager: bool = False) -> StartRun:
            return lambda i: _one_run(client, f"{task_queue}-{tag}-{i}", task_queue, local=local, eager=eager)

        n = plan.anchor_runs
        regular, _ = await _one_at_a_time(n, runner("seq", local=False))
        _say_latency(bench, "regular", f"(a) regular activities, one at a time ({n} runs)", regular)
        await _throughput(bench, runner("par", local=False))
        local, _ = await _one_at_a_time(n, runner("local", local=True))
        _say_latency(bench, "local", f"(b) local activities, one at a time ({n} runs)", local)
        eager, eager_count = await _one_at_a_time(n, runner("eager", local=True, eager=True))
        _say_latency(bench, "eager", f"(b) local, request_eager_start ({n} runs, {eager_count} eager)", eager)
    report.record(eager_started=eager_count)
    anchors = bench.anchors
    report.ratio("local-activity p50 / regular p50", anchors["local_p50"] / anchors["regular_p50"], None)


def _say_latency(bench: Bench, key: str, label: str, seconds: list[float]) -> None:
    p50, p99 = median(seconds), percentile(seconds, 99)
    bench.anchors[f"{key}_p50"] = p50
    bench.report.spread(label, seconds)
    bench.report.record(**{f"{key}_p50_ms": p50 * 1000, f"{key}_p99_ms": p99 * 1000})


async def _throughput(bench: Bench, run: StartRun) -> None:
    """Regular anchor runs, ``in_flight`` at a time: runs/s and CPU per run."""
    plan, report = bench.plan, bench.report
    gate = asyncio.Semaphore(plan.in_flight)

    async def gated(i: int) -> None:
        async with gate:
            await run(i)

    before = usage(bench.target.state_dir)
    started = time.perf_counter()
    await asyncio.gather(*(gated(i) for i in range(plan.anchor_throughput_runs)))
    wall = time.perf_counter() - started
    cpu = cpu_used(before, usage(bench.target.state_dir))
    per_second = plan.anchor_throughput_runs / wall
    bench.anchors["regular_runs_per_s"] = per_second
    per_run = {name: seconds / plan.anchor_throughput_runs
               for name in ("temporal", "bench") if (seconds := cpu.get(name)) is not None}
    cpu_text = ", ".join(f"{name} {ms(seconds)}" for name, seconds in per_run.items())
    label = f"(a) regular activities, {plan.in_flight} in flight ({plan.anchor_throughput_runs} runs)"
    report.say(f"{label:<56} {per_second:.2f} runs/s   CPU per run: {cpu_text or 'n/a'}")
    report.record(regular_runs_per_s=per_second,
                  regular_cpu_ms_per_run={name: seconds * 1000 for name, seconds in per_run.items()})
