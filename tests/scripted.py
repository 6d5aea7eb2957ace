"""Step activities registered under the real step names, scripted by a test: they mirror their
status like the real ones (through the real store) and count their calls."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from tenantflow.catalog import PROJECT_STEP_NAMES
from tenantflow.contracts import StepInput, StepResult
from tenantflow.models import StepStatus
from tenantflow.store import Store


class ScriptedSteps:
    """Knobs: ``fail[name]`` raises that error on every call until removed; ``fail_once`` steps fail
    (non-retryably) on their next call; ``skip`` steps report skipped; ``hold(name)`` makes a step
    wait until the returned event is set. Others end with ``outcome`` (success by default)."""

    def __init__(self, store: Store, *, outcome: StepStatus = StepStatus.SUCCESS) -> None:
        self.store = store
        self.outcome = outcome
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, ApplicationError] = {}
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

    def _make(self, name: str) -> Callable[..., Any]:
        @activity.defn(name=name)
        async def step(input: StepInput) -> StepResult:
            self.calls[name] += 1
            pid = uuid.UUID(input.project_id)
            await self.store.step_started(pid, name, attempt=activity.info().attempt)
            gate = self.held.get(name)
            while gate is not None and not gate.is_set():
                activity.heartbeat()
                await asyncio.sleep(0.05)
            error = self.fail.get(name)
            if error is None and name in self.fail_once:
                self.fail_once.discard(name)
                error = ApplicationError("scripted failure", type="ServiceRejected", non_retryable=True)
            if error is not None:
                await self.store.step_finished(pid, name, status=StepStatus.FAILED,
                                               error_message=error.message)
                raise error
            status = StepStatus.SKIPPED if name in self.skip else self.outcome
            await self.store.step_finished(pid, name, status=status)
            return StepResult(status=status)

        return step
