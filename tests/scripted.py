"""Step activities registered under the real step names, scripted by a test. Each runs through the
real step mechanism (``activities.mirror.step``: mirroring, fences, heartbeats, error mapping), so
the rows they leave are what real steps leave; only the step's own work is scripted."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.deps import Deps
from activities.mirror import StepActivities, StepSkipped, step
from tenantflow.catalog import PROJECT_STEP_NAMES, StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.errors import ServiceRejected, TenantflowError


class ScriptedSteps:
    """Knobs: ``fail[name]`` raises that error on every call until removed; ``fail_once`` steps fail
    (non-retryably) on their next call; ``skip`` steps (all with ``skip_all``) report skipped;
    ``hold(name)`` makes a step wait until the returned event is set. Others succeed."""

    def __init__(self, deps: Deps, *, skip_all: bool = False) -> None:
        self.deps = deps
        self.skip_all = skip_all
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, TenantflowError] = {}
        self.fail_once: set[str] = set()
        self.skip: set[str] = set()
        self.held: dict[str, asyncio.Event] = {}

    def hold(self, step: str) -> asyncio.Event:
        """Make ``step`` wait; set the returned event to let it finish."""
        self.held[step] = asyncio.Event()
        return self.held[step]

    def release_all(self) -> None:
        for gate in self.held.values():
            gate.set()

    def activities(self) -> list[Callable[..., Any]]:
        return [self._make(name) for name in PROJECT_STEP_NAMES]

    def _make(self, name: StepName) -> Callable[..., Any]:
        mirrored = step(name)(self._body(name))
        owner = StepActivities(self.deps)

        @activity.defn(name=name)
        async def scripted(input: StepInput) -> StepResult:
            return await mirrored(owner, input)

        return scripted

    def _body(self, name: StepName) -> Callable[[Any, StepInput], Any]:
        async def body(_: StepActivities, input: StepInput) -> StepResult | None:
            self.calls[name] += 1
            gate = self.held.get(name)
            while gate is not None and not gate.is_set():
                await asyncio.sleep(0.05)  # the step mechanism heartbeats meanwhile
            error = self.fail.get(name)
            if error is None and name in self.fail_once:
                self.fail_once.discard(name)
                error = ServiceRejected("scripted failure")
            if error is not None:
                raise error
            if self.skip_all or name in self.skip:
                raise StepSkipped("scripted skip")
            return StepResult(status="success", details={"scripted": True})

        return body
