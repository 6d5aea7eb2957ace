"""What one run of the harness does (``Plan``) and what its sections share (``Bench``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from bench.report import Report
from bench.stack import Target, Usage

LoadChoice = Literal["auto", "wrk", "python"]


@dataclass(frozen=True)
class Plan:
    """How much each section measures. ``quick()`` is the smoke-test size."""

    run_id: str
    anchor_runs: int = 20  # each anchor, one at a time
    anchor_throughput_runs: int = 60
    latency_runs: int = 20
    throughput_runs: int = 40
    in_flight: int = 10
    burst: int = 200
    list_size: int = 10_000
    page_size: int = 100
    page_fetches: int = 7  # each timed page, fetched this often (median)
    load_seconds: float = 10.0
    connections: int = 10
    memory_runs: int = 0
    memory_every: int = 100
    load_generator: LoadChoice = "auto"
    cleanup: bool = False

    def quick(self) -> Plan:
        return replace(self, anchor_runs=5, anchor_throughput_runs=20, latency_runs=5, throughput_runs=10,
                       burst=20, list_size=1_000, page_fetches=3, load_seconds=3.0)

    def tenant_name(self, what: str) -> str:
        """A name for a tenant this run creates: ``bench-<run id>-<what>``."""
        return f"bench-{self.run_id}-{what}"


@dataclass
class Bench:
    """A run in progress: where, how much, the report, and what later sections need from earlier
    ones (the anchors' figures for the ratios, the tenants created for ``--cleanup``)."""

    target: Target
    plan: Plan
    report: Report
    anchors: dict[str, float] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)  # ids of the tenants this run created
    online_id: str | None = None  # a tenant of this run that is online (for the reads)
    usage_at_start: dict[str, Usage] = field(default_factory=dict)
