"""``GET /metrics`` against a real mirror database, Temporal dev server and worker: what Prometheus
would read after real runs, parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import Histogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from starlette.staticfiles import StaticFiles

from activities.deps import Deps
from api.main import create_app
from api.metrics import STEP_BUCKETS, RequestTimer
from standins.server import ThreadedServer
from tenantflow.catalog import PROJECT_STEP_NAMES, AttemptOutcome, ProjectKind, ProjectStatus, StepName
from tenantflow.errors import ServiceRejected
from tenantflow.settings import Settings
from tests.api.conftest import AUTH, ScriptedSteps, open_api
from tests.conftest import API_TOKEN, eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text page, by name and labels (the parser rejects a bad page)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a series appears with its first observation)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def db_tenant_counts(settings: Settings) -> dict[tuple[str, str], int]:
    async with await psycopg.AsyncConnection.connect(settings.database_url.get_secret_value()) as conn:
        cursor = await conn.execute("SELECT status, kind, count(*) FROM projects GROUP BY 1, 2")
        rows = await cursor.fetchall()
    return {(status, kind): count for status, kind, count in rows}


async def wait_status(api: httpx.AsyncClient, pid: str, status: str) -> None:
    async def reached() -> bool:
        return (await api.get(f"/v1/projects/{pid}")).json()["status"] == status

    await eventually(reached, timeout=30)


# ------------------------------------------------------------------------------------------ auth
async def test_metrics_take_the_metrics_token_or_the_api_token_and_nothing_else(
    make_settings: Callable[..., Settings],
) -> None:
    metrics_token = "metrics-token-0123456789"
    async with open_api(make_settings(metrics_token=metrics_token)) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {metrics_token}"},
                        {"Authorization": f"Bearer {metrics_token}x"}):
            response = await client.get("/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert metrics_token not in response.text
        as_prometheus = {"Authorization": f"Bearer {metrics_token}"}
        assert (await client.get("/metrics", headers=as_prometheus)).status_code == 200
        assert (await client.get("/metrics", headers=AUTH)).status_code == 200
        # The metrics token opens /metrics only: Prometheus never holds a key to the tenants.
        refused = await client.get("/v1/projects", headers=as_prometheus)
        assert refused.status_code == 401


async def test_without_a_metrics_token_only_the_api_token_opens_metrics(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/metrics")).status_code == 401
    assert (await anon.get("/metrics", headers={"Authorization": "Bearer "})).status_code == 401
    assert (await anon.get("/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})).status_code == 200


# ------------------------------------------------------------------------------ the mirror tables
async def test_after_real_runs_steps_and_runs_are_counted(
    api: httpx.AsyncClient, script: ScriptedSteps, settings: Settings, tenant_name: Callable[[], str]
) -> None:
    before = await scrape(api)
    started = time.monotonic()
    online = (await api.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    await wait_status(api, online, "online")
    script.fail[StepName.VERIFY_SERVICES] = ServiceRejected("scripted: verification refused")
    failed = (await api.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
    await wait_status(api, failed, "failed")
    elapsed = time.monotonic() - started
    after = await scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Both tenants went through the first eight steps (scripted: skipped); verify_services was
    # skipped for one and failed (not retryable: one attempt) for the other.
    expected = {(step, "skipped"): 2 for step in PROJECT_STEP_NAMES[:-1]}
    expected |= {(StepName.VERIFY_SERVICES, "skipped"): 1, (StepName.VERIFY_SERVICES, "failed"): 1}
    for (step, outcome), count in expected.items():
        labels = {"step": step, "outcome": outcome}
        assert delta("tenantflow_step_attempts_total", **labels) == count, labels
        assert delta("tenantflow_step_duration_seconds_count", **labels) == count, labels
        assert delta("tenantflow_step_duration_seconds_bucket", **labels, le="+Inf") == count, labels
        assert 0 <= delta("tenantflow_step_duration_seconds_sum", **labels) <= count * elapsed, labels
        buckets = [value(after, "tenantflow_step_duration_seconds_bucket", **labels, le=str(float(b)))
                   for b in STEP_BUCKETS]
        assert buckets == sorted(buckets), labels  # cumulative
    assert delta("tenantflow_step_attempts_total", step=StepName.VERIFY_SERVICES, outcome="success") == 0

    counts = await db_tenant_counts(settings)
    for status in ProjectStatus:
        for kind in ProjectKind:  # every pair is there, zero or not
            assert value(after, "tenantflow_runs", status=status, kind=kind) == counts.get((status, kind), 0)
    in_flight = sum(n for (status, _), n in counts.items()
                    if status in ("pending", "provisioning", "deprovisioning"))
    assert value(after, "tenantflow_runs_in_flight") == in_flight
    assert value(after, "tenantflow_mirror_up") == 1


async def test_step_durations_fall_into_their_buckets(api: httpx.AsyncClient, deps: Deps, settings: Settings,
                                                      tenant_name: Callable[[], str]) -> None:
    step, outcome = StepName.DROP_TENANT_DATABASE, AttemptOutcome.LOST
    labels = {"step": step, "outcome": outcome}
    created = await deps.store.create_project(name=tenant_name(), kind=ProjectKind.PROJECT, steps=[step])
    project = created.project
    before = await scrape(api)
    async with await psycopg.AsyncConnection.connect(settings.database_url.get_secret_value()) as conn:
        for attempt, seconds in enumerate([0.3, 4.0, 5.0, 90.0, None], start=1):
            await conn.execute(
                "INSERT INTO provisioning_step_attempts (project_id, step_name, generation, attempt,"
                " started_at, finished_at, outcome) VALUES (%s, %s, 0, %s, now(), now() + %s, %s)",
                (project.id, step, attempt, None if seconds is None else timedelta(seconds=seconds),
                 None if seconds is None else outcome),
            )
        await conn.commit()
    after = await scrape(api)

    def delta(name: str, **extra: str) -> float:
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    assert [delta("tenantflow_step_duration_seconds_bucket", le=le) for le in
            ("0.25", "0.5", "2.5", "5.0", "60.0", "120.0", "3600.0", "+Inf")] == [0, 1, 1, 3, 3, 4, 4, 4]
    assert delta("tenantflow_step_duration_seconds_count") == 4
    assert delta("tenantflow_step_duration_seconds_sum") == pytest.approx(99.3)
    assert delta("tenantflow_step_attempts_total") == 4
    # (5.0 s is within le="5.0": upper bounds are inclusive.) The fifth attempt has not finished:
    # it is running, not counted among the finished.
    running = (value(after, "tenantflow_step_attempts_running", step=step)
               - value(before, "tenantflow_step_attempts_running", step=step))
    assert running == 1


async def test_an_unreachable_mirror_still_answers_with_request_metrics(
    make_settings: Callable[..., Settings],
) -> None:
    dead = make_settings(database_url="postgresql://nobody:pw@127.0.0.1:9/nothing")
    async with open_api(dead, headers=AUTH) as client:
        await client.get("/v1/no-such-route")
        samples = await scrape(client)
    assert value(samples, "tenantflow_mirror_up") == 0
    assert value(samples, "tenantflow_http_request_duration_seconds_count",
                 method="GET", route="<unmatched>", status="404") == 1
    assert not [name for name, _ in samples if name.startswith(("tenantflow_runs", "tenantflow_step"))]


async def test_openmetrics_is_served_to_a_scraper_that_asks_for_it(api: httpx.AsyncClient) -> None:
    response = await api.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(response.text)}  # the parser insists on "# EOF"
    assert families["tenantflow_step_attempts"].type == "counter"
    assert families["tenantflow_step_duration_seconds"].type == "histogram"


# ------------------------------------------------------------------------------- request latency
async def test_request_latency_is_labelled_by_route_template(api: httpx.AsyncClient, script: ScriptedSteps,
                                                             tenant_name: Callable[[], str]) -> None:
    name = tenant_name()
    created = (await api.post("/v1/projects", json={"name": name})).json()
    unknown = str(uuid.uuid4())
    for ref in (created["id"], name, unknown):
        await api.get(f"/v1/projects/{ref}")
    await api.get(f"/v1/projects/{created['id']}/steps")
    junk = f"/junk-{uuid.uuid4().hex}"
    await api.get(junk)
    response = await api.get("/metrics")
    samples = parse(response.text)

    def count(method: str, route: str, status: str) -> float:
        return value(samples, "tenantflow_http_request_duration_seconds_count",
                     method=method, route=route, status=status)

    assert count("POST", "/v1/projects", "202") == 1
    assert count("GET", "/v1/projects/{ref}", "200") == 2
    assert count("GET", "/v1/projects/{ref}", "404") == 1
    assert count("GET", "/v1/projects/{ref}/steps", "200") == 1
    assert count("GET", "<unmatched>", "404") == 1
    for raw in (created["id"], name, unknown, junk):  # never a raw path: bounded cardinality
        assert raw not in response.text


async def test_each_app_counts_its_own_requests(settings: Settings) -> None:
    async with open_api(settings, headers=AUTH) as first, open_api(settings, headers=AUTH) as second:
        for _ in range(3):
            await first.get("/healthz")
        first_samples, second_samples = await scrape(first), await scrape(second)
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert value(first_samples, "tenantflow_http_request_duration_seconds_count", **healthz) == 3
    assert value(second_samples, "tenantflow_http_request_duration_seconds_count", **healthz) == 0


async def test_an_event_stream_counts_the_time_to_its_start_not_its_life(
    settings: Settings, script: ScriptedSteps, tenant_name: Callable[[], str]
) -> None:
    gate = script.hold(StepName.CREATE_TENANT_SCHEMA)
    with ThreadedServer(create_app(settings)) as server:  # over HTTP, so the response streams
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30) as client:
            pid = (await client.post("/v1/projects", json={"name": tenant_name()})).json()["id"]
            started = time.monotonic()
            asyncio.get_running_loop().call_later(1.0, gate.set)  # the run goes on a second later
            async with client.stream("GET", f"/v1/projects/{pid}/events") as response:
                body = "".join([line async for line in response.aiter_lines()])
            lasted = time.monotonic() - started
            samples = await scrape(client)
    assert "event: end" in body and lasted >= 1.0
    labels = {"method": "GET", "route": "/v1/projects/{ref}/events", "status": "200"}
    assert value(samples, "tenantflow_http_request_duration_seconds_count", **labels) == 1
    assert value(samples, "tenantflow_http_request_duration_seconds_sum", **labels) < 0.5


# The middleware alone, on small apps: a stream, a mount, an exception.
@pytest.fixture
def timed() -> Callable[[FastAPI], Histogram]:
    def install(app: FastAPI) -> Histogram:
        histogram = Histogram("h_seconds", "test", ["method", "route", "status"],
                              registry=CollectorRegistry())
        app.add_middleware(RequestTimer, histogram=histogram)
        return histogram

    return install


@pytest.fixture
async def client_of() -> AsyncIterator[Callable[[FastAPI], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(app: FastAPI) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                         base_url="http://app"))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


def observed(histogram: Histogram, method: str, route: str, status: str) -> tuple[float, float]:
    """(count, sum of seconds) of one series."""
    got = {s.name: s.value for m in histogram.collect() for s in m.samples
           if s.labels.get("route") == route and s.labels.get("status") == status
           and s.labels.get("method") == method}
    return got.get("h_seconds_count", 0.0), got.get("h_seconds_sum", 0.0)


async def test_a_stream_is_timed_to_its_first_byte_not_its_whole_life(
    timed: Callable[[FastAPI], Histogram], client_of: Callable[[FastAPI], httpx.AsyncClient],
) -> None:
    app = FastAPI()

    @app.get("/streams/{sid}")
    async def stream(sid: str) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            for i in range(3):
                yield f"data: {i}\n\n"
                await asyncio.sleep(0.5)

        return StreamingResponse(events(), media_type="text/event-stream")

    histogram = timed(app)
    started = time.monotonic()
    response = await client_of(app).get("/streams/abc")
    lasted = time.monotonic() - started
    assert response.text.count("data:") == 3 and lasted >= 1.5
    count, seconds = observed(histogram, "GET", "/streams/{sid}", "200")
    assert count == 1 and seconds < 0.5


async def test_mounted_apps_unknown_methods_and_crashes_stay_bounded(
    timed: Callable[[FastAPI], Histogram], client_of: Callable[[FastAPI], httpx.AsyncClient], tmp_path: Path,
) -> None:
    (tmp_path / "app.css").write_text("body {}")
    app = FastAPI()
    app.mount("/console/static", StaticFiles(directory=tmp_path))

    @app.get("/boom")
    async def boom() -> Any:
        raise RuntimeError("crash")

    histogram = timed(app)
    client = client_of(app)
    assert (await client.get("/console/static/app.css")).status_code == 200
    assert (await client.get("/console/static/missing.css")).status_code == 404
    assert (await client.get("/boom")).status_code == 500
    await client.request("BREW", "/boom")
    assert observed(histogram, "GET", "/console/static/{path}", "200")[0] == 1
    assert observed(histogram, "GET", "/console/static/{path}", "404")[0] == 1
    assert observed(histogram, "GET", "/boom", "500")[0] == 1
    assert observed(histogram, "other", "/boom", "405")[0] == 1
