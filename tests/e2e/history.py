"""Reading a workflow's whole history as text, payloads decoded, to search it for secrets; and
the stored secrets to search for."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle

from activities.deps import Deps
from tenantflow.settings import Settings


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


async def history_text(handle: WorkflowHandle) -> str:
    """Every string in the history, plus the base64-decoded form of each (payloads are base64)."""
    history = await handle.fetch_history()
    out: list[str] = []
    for s in _strings(json.loads(history.to_json())):
        out.append(s)
        try:
            out.append(base64.b64decode(s, validate=True).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            pass
    return "\n".join(out)


async def activity_schedules(handle: WorkflowHandle) -> dict[str, int]:
    """How many times each activity type was scheduled, regular or local (attempts within one
    schedule are not counted here: they are in the step row's retry_count)."""
    return scheduled_activities((await handle.fetch_history()).events)


def scheduled_activities(events: Iterable[HistoryEvent]) -> dict[str, int]:
    """Activity types and how often each was scheduled: regular activities by their scheduled
    event, local ones by the marker that records their result."""
    counts: dict[str, int] = {}
    for event in events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            name = event.activity_task_scheduled_event_attributes.activity_type.name
        elif _marker(event, LOCAL_ACTIVITY_MARKER):
            data = event.marker_recorded_event_attributes.details["data"].payloads[0].data
            name = json.loads(data)["activity_type"]
        else:
            continue
        counts[name] = counts.get(name, 0) + 1
    return counts


def patches(events: Iterable[HistoryEvent]) -> set[str]:
    """The ids of the ``workflow.patched`` markers in a history."""
    return {
        json.loads(event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for event in events if _marker(event, PATCH_MARKER)
    }


# The markers the SDK's core records for a local activity's result and for a patch.
LOCAL_ACTIVITY_MARKER = "core_local_activity"
PATCH_MARKER = "core_patch"


def _marker(event: HistoryEvent, name: str) -> bool:
    return (event.HasField("marker_recorded_event_attributes")
            and event.marker_recorded_event_attributes.marker_name == name)


async def stored_secrets(settings: Settings, project_id: str, *kinds: str) -> list[str]:
    """The plaintexts of a tenant's stored credentials, opened with the worker's keyring."""
    deps = Deps.from_settings(settings)
    try:
        return [await deps.credentials.get(uuid.UUID(project_id), kind) for kind in kinds]
    finally:
        await deps.aclose()
