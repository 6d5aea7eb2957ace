"""``GET /v1/users/{id}/status``: what a signed-up user's client polls until its tenant is ready."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from activities.deps import Deps
from tenantflow.catalog import USER_STEP_NAMES
from tenantflow.settings import Settings
from tests.api.conftest import AUTH, ScriptedSteps, open_api
from tests.conftest import eventually

SIGNUP_URL = "/v1/webhooks/auth/signup"


async def sign_up(api: httpx.AsyncClient, settings: Settings, user_id: uuid.UUID) -> None:
    """Deliver the auth service's signup webhook (bearer-authenticated)."""
    body = json.dumps({"type": "INSERT", "table": "users", "schema": "auth",
                       "record": {"id": str(user_id), "email": "u@example.com"}, "old_record": None})
    secret = settings.webhook_secret.get_secret_value()
    response = await api.post(SIGNUP_URL, content=body, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 202, response.text


def status_is(api: httpx.AsyncClient, user_id: uuid.UUID, wanted: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        response = await api.get(f"/v1/users/{user_id}/status")
        return response.status_code == 200 and response.json()["status"] == wanted

    return check


async def test_unknown_users_are_404_and_bad_ids_422(api: httpx.AsyncClient) -> None:
    unknown = uuid.uuid4()
    response = await api.get(f"/v1/users/{unknown}/status")
    assert response.status_code == 404 and str(unknown) in response.json()["detail"]
    assert (await api.get("/v1/users/not-a-uuid/status")).status_code == 422


async def test_status_is_pending_while_provisioning_then_ready(
    api: httpx.AsyncClient, settings: Settings, script: ScriptedSteps
) -> None:
    release = script.hold("wait_graph_database_online")
    user_id = uuid.uuid4()
    await sign_up(api, settings, user_id)

    pending = (await api.get(f"/v1/users/{user_id}/status")).json()
    assert pending["status"] == "pending" and pending["user_id"] == str(user_id)
    assert [s["name"] for s in pending["steps"]] == list(USER_STEP_NAMES)
    await eventually(lambda: script.calls["wait_graph_database_online"] == 1)
    waiting = (await api.get(f"/v1/users/{user_id}/status")).json()
    assert waiting["status"] == "pending"
    assert [s["status"] for s in waiting["steps"]] == ["skipped", "running"]

    release.set()
    await eventually(status_is(api, user_id, "ready"))


async def test_status_is_failed_when_a_step_failed(
    api: httpx.AsyncClient, settings: Settings, script: ScriptedSteps
) -> None:
    script.fail_once.add("create_graph_database")
    user_id = uuid.uuid4()
    await sign_up(api, settings, user_id)
    await eventually(status_is(api, user_id, "failed"))
    steps = (await api.get(f"/v1/users/{user_id}/status")).json()["steps"]
    assert steps[0]["status"] == "failed" and steps[0]["error_message"] == "scripted failure"


async def test_with_the_real_worker_and_no_graph_backend_the_user_becomes_ready(
    settings: Settings, run_worker: Any
) -> None:
    # graph_backend is "none" in the test settings: both graph steps are skipped.
    user_id = uuid.uuid4()
    async with run_worker(settings), open_api(settings, headers=AUTH) as api:
        await sign_up(api, settings, user_id)
        await eventually(status_is(api, user_id, "ready"))
        ready = (await api.get(f"/v1/users/{user_id}/status")).json()
    assert [(s["name"], s["status"]) for s in ready["steps"]] == [(n, "skipped") for n in USER_STEP_NAMES]


async def test_status_shows_graph_connection_info_but_no_password(
    api: httpx.AsyncClient, settings: Settings, deps: Deps
) -> None:
    user_id = uuid.uuid4()
    await sign_up(api, settings, user_id)
    project = await deps.store.get_user_project(user_id)
    assert project is not None
    await deps.store.update_project(
        project.id, graph_backend="arcadedb", graph_mode="database", graph_database="tf-u",
        graph_status="online", graph_uri="bolt://127.0.0.1:7687", graph_http_uri="http://127.0.0.1:2480",
        graph_username="root",
    )
    password = secrets.token_urlsafe(24)
    await deps.credentials.put(project.id, "graph_password", password)

    response = await api.get(f"/v1/users/{user_id}/status")
    assert response.json()["graph"] == {
        "backend": "arcadedb", "mode": "database", "database": "tf-u", "status": "online",
        "uri": "bolt://127.0.0.1:7687", "http_uri": "http://127.0.0.1:2480", "username": "root",
    }
    assert password not in response.text and "password" not in response.text.lower()
