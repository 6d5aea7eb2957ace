"""Recorded histories of representative runs, kept as fixtures so that a change to the workflow
code which would break runs already in flight (a failed run waits for a person for days) fails CI.

A fixture is ``tests/workflows/histories/<scenario>.json``: the workflow id and the history as
Temporal's JSON. ``tests/e2e/test_record_histories.py`` makes them on real parts; with
``TENANTFLOW_RECORD_HISTORIES=1`` it writes the scenarios that have no file yet. Record new
scenarios; never re-record an existing one to make a replay failure go away: that failure is what
a deploy would do to live runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = Path(__file__).parent / "histories"

# The runs the fixtures must cover (issue 11): each kind of run and each way it ends or waits.
# Recorded by tests/e2e/test_record_histories.py:
LIFECYCLE_SCENARIOS = (
    "project-online",
    "project-failed-waiting",
    "project-retried",
    "project-deprovision",
    "project-failed-then-deleted",
    "project-deprovision-of-failed",
    "user-online",
    "user-deprovision",
    "retry-failed-bulk",
    "project-deleted-mid-step",  # cancelled while a step ran (patch "cancel-mid-step")
    "project-online-local-mirror",  # the run's mirror writes as local activities (patch "local-mirror")
    # Steps side by side as their needs allow (patch "parallel-steps"):
    "project-online-parallel",
    "project-failed-waiting-parallel",
    "project-retried-parallel",
    "project-deleted-mid-step-parallel",  # three registrations in flight when it is cancelled
    "user-online-parallel",
    "project-two-failed-retried-parallel",  # two steps failed side by side, retried in turn
)
# Completion webhooks (recorded by tests/workflows/test_event_webhooks.py): runs that announce,
# and the delivery runs of one event (delivered after a 500; refused with a 410).
WEBHOOK_SCENARIOS = (
    "project-online-announced",
    "project-retried-announced",
    "event-delivered-after-500",
    "event-refused-410",
)
SCENARIOS = LIFECYCLE_SCENARIOS + WEBHOOK_SCENARIOS


def keep_as_fixture(scenario: str, history: WorkflowHistory) -> Path | None:
    """Save ``history`` as the scenario's fixture when ``TENANTFLOW_RECORD_HISTORIES`` asks for it:
    ``1`` saves scenarios that have no fixture yet, ``all`` rewrites every one (rarely right: an old
    fixture is what proves today's code still replays runs that older code started)."""
    mode = os.environ.get("TENANTFLOW_RECORD_HISTORIES", "")
    path = HISTORIES / f"{scenario}.json"
    if not (mode == "all" or (mode == "1" and not path.exists())):
        return None
    body = {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}
    path.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    return path


def load(scenario: str) -> WorkflowHistory:
    body = json.loads((HISTORIES / f"{scenario}.json").read_text())
    return WorkflowHistory.from_json(body["workflow_id"], body["history"])


def replayer() -> Replayer:
    """Today's workflow code, as a deployed worker registers it."""
    return Replayer(workflows=WORKFLOWS)
