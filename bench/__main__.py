"""``scripts/bench`` (``python -m bench``): measure a running dev stack against issue 12's goals.

Start the stack first (``scripts/dev``, in another terminal), then run this with the same
``--state-dir`` and port flags. It prints, in one run: the machine's load, both bare-Temporal
anchors, tenantflow's latency with its critical path, throughput with CPU per process, the reads
against the yardstick, the 10k listing, the burst, memory, and each ratio next to its goal.
Tenants it creates are named ``bench-<run id>-...``; ``--cleanup`` deletes them at the end.

Exit code: 0 when every section measured (whatever the verdicts), 1 when one could not,
2 when there is no stack to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import subprocess
import sys
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.anchors import anchors_section
from bench.listing import listing_section
from bench.plan import Bench, Plan
from bench.reads import reads_section
from bench.report import Report
from bench.stack import BenchError, Target, cores, loadavg, megabytes, recorded_children, usage
from bench.tenants import burst_section, cleanup, latency_section, memory_section, throughput_section
from devstack.stack import DEFAULT_STATE_DIR, Ports

SECTIONS: dict[str, Callable[[Bench], Awaitable[None]]] = {
    "anchors": anchors_section,
    "latency": latency_section,
    "throughput": throughput_section,
    "reads": reads_section,
    "listing": listing_section,
    "burst": burst_section,
    "memory": memory_section,
}
# Plan fields a flag may set (None: the plan's default, or --quick's).
OVERRIDES = {"anchor_runs": int, "latency_runs": int, "throughput_runs": int, "in_flight": int,
             "burst": int, "list_size": int, "load_seconds": float, "connections": int, "memory_runs": int,
             "memory_every": int}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="the dev stack's state directory (default: %(default)s)")
    Ports.add_arguments(parser, whose="the stack's ")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"sections to run, comma-separated, of: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of a minute or two")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--cleanup", action="store_true",
                        help="delete the tenants this run created, at the end (through the API)")
    parser.add_argument("--load-generator", choices=["auto", "wrk", "python"], default="auto",
                        help="for the reads: wrk (installed with apt when missing and root), or the Python "
                        "one; auto: wrk if it can be had (default)")
    for name, kind in OVERRIDES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, metavar="N",
                            help=f"{name.replace('_', ' ')} (default: {getattr(Plan('x'), name)}; "
                            f"--quick: {getattr(Plan('x').quick(), name)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only.split(",")) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}: choose from {', '.join(SECTIONS)}")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    plan = Plan(uuid.uuid4().hex[:6], load_generator=args.load_generator, cleanup=args.cleanup)
    if args.quick:
        plan = plan.quick()
    given = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    return dataclasses.replace(plan, **given)


def _check_stack(target: Target) -> None:
    try:
        httpx.get(f"{target.api_url}/healthz", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        raise BenchError(f"no dev stack answers at {target.api_url}/healthz ({type(exc).__name__}): "
                         "start one with scripts/dev in another terminal, or pass the --api-port and "
                         "--state-dir it uses") from None


def machine_start(bench: Bench) -> None:
    report = bench.report
    report.section("machine", "where this runs")
    one, five, fifteen = loadavg()
    report.say(f"cores {cores()}; load average at the start {one:.2f} {five:.2f} {fifteen:.2f}")
    if shutil.which("uptime"):
        report.say("uptime: " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if one > 0.5 * cores():
        report.say(f"WARNING: the 1-minute load ({one:.2f}) is above half the cores: other work competes "
                   "for the CPU, so the absolute figures are noisy (the ratios less so)")
    children = recorded_children(bench.target.state_dir)
    bench.usage_at_start = usage(bench.target.state_dir, include_self=False)
    report.say("stack processes (RSS summed over each tree): " + (", ".join(
        f"{name} (pid {pid}, {bench.usage_at_start[name].processes} processes, "
        f"{megabytes(bench.usage_at_start[name].rss_bytes)})"
        for name, pid in children.items() if name in bench.usage_at_start)
        or f"none recorded in {bench.target.state_dir}/children.json: no CPU or memory figures"))
    report.say(f"API {bench.target.api_url}, Temporal {bench.target.temporal_address}, "
               f"run id {bench.plan.run_id} (tenants bench-{bench.plan.run_id}-*)")
    report.record(cores=cores(), loadavg_start=[one, five, fifteen], run_id=bench.plan.run_id)


def machine_end(bench: Bench) -> None:
    report = bench.report
    report.section("machine", "at the end")
    one, five, fifteen = loadavg()
    report.say(f"load average at the end {one:.2f} {five:.2f} {fifteen:.2f}")
    report.record(loadavg_end=[one, five, fifteen])


def summary(report: Report) -> None:
    report.section("summary", "every ratio against its goal (issue 12)")
    for r in report.ratios:
        if r.goal is not None:
            verdict = "n/a" if r.passed is None else ("PASS" if r.passed else "FAIL")
            value = "n/a" if r.value is None else f"{r.value:.2f}"
            report.say(f"{r.section:<11} {r.label:<58} {value:>6}  goal {r.goal:<6} {verdict}")
    if report.errors:
        report.say(f"sections that could not measure: {', '.join(report.errors)}")


async def run(bench: Bench, sections: list[str]) -> None:
    machine_start(bench)
    for name in sections:
        try:
            await SECTIONS[name](bench)
        except Exception as exc:  # one broken section must not cost the others' figures
            traceback.print_exc(file=sys.stderr)
            bench.report.current = name
            bench.report.error(f"{type(exc).__name__}: {exc}")
    if bench.plan.cleanup and bench.created:
        await cleanup(bench)
    machine_end(bench)
    summary(bench.report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    ports = Ports.from_args(args)
    report = Report()
    try:
        target = Target.load(args.state_dir, ports)
        _check_stack(target)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    bench = Bench(target, plan, report)
    sections = [name for name in SECTIONS if name in args.only.split(",")]
    asyncio.run(run(bench, sections))
    if args.json:
        report.write_json(args.json, run_id=plan.run_id, plan=dataclasses.asdict(plan))
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
