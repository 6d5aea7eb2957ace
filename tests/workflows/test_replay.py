"""Deploy safety: every recorded history replays on today's workflow code (``tests/workflows/replay.py``
says how they are made and kept). A failure here means a run in flight when this code is deployed
would fail with a non-determinism error: guard the change with ``workflow.patched`` instead."""

from __future__ import annotations

import pytest

from tests.workflows.replay import HISTORIES, SCENARIOS, load, replayer


def test_the_fixtures_cover_every_scenario() -> None:
    assert {p.stem for p in HISTORIES.glob("*.json")} >= set(SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_a_recorded_run_replays_on_todays_code(scenario: str) -> None:
    result = await replayer().replay_workflow(load(scenario), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{scenario}: {result.replay_failure}"
