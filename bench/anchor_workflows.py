"""The anchors' workflow: nine no-op activities in a row, as regular or as local activities.

What a run of tenantflow's nine steps would cost if the steps did nothing and the workflow did
nothing else: the floor Temporal itself sets on this machine. Kept apart from the runner so the
workflow sandbox imports nothing but temporalio.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

STEPS = 9
TIMEOUT = timedelta(seconds=30)


@dataclass(frozen=True)
class AnchorInput:
    local: bool  # local activities (run inside the workflow's task) rather than regular ones
    steps: int = STEPS


@dataclass(frozen=True)
class AnchorResult:
    steps_run: int


@activity.defn(name="bench_noop")
async def noop(step: int) -> int:
    """Does nothing: the anchor measures what it costs to run an activity at all."""
    return step


@workflow.defn(name="BenchNineSteps")
class NineSteps:
    @workflow.run
    async def run(self, params: AnchorInput) -> AnchorResult:
        for step in range(params.steps):
            if params.local:
                await workflow.execute_local_activity(noop, step, start_to_close_timeout=TIMEOUT)
            else:
                await workflow.execute_activity(noop, step, start_to_close_timeout=TIMEOUT)
        return AnchorResult(params.steps)
