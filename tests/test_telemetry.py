"""The worker's Temporal SDK metrics and the tracing of runs (``tenantflow.telemetry``), on the real
Temporal dev server: metrics scraped from the port they are served on, spans received by a real
OTLP/HTTP endpoint (a small HTTP server decoding the protobuf export requests)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.worker import Worker

from activities.deps import Deps
from activities.project import ProjectActivities
from devstack.ports import free_port
from tenantflow import telemetry
from tenantflow.catalog import PROJECT_STEP_NAMES, ProjectKind
from tenantflow.errors import ConfigurationError
from tenantflow.settings import Settings, to_env
from tenantflow.temporal import connect, start_provisioning
from tests.api.conftest import AUTH, open_api
from tests.conftest import ROOT, eventually
from tests.scripted import ScriptedSteps
from worker import WORKFLOWS


# ------------------------------------------------------------------------------ an OTLP receiver
@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    service: str
    attributes: dict[str, Any]


class OtlpReceiver:
    """An OTLP/HTTP endpoint on a free port: ``POST /v1/traces`` (protobuf), spans kept in ``spans``."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.headers: list[dict[str, str]] = []  # of each export request
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                receiver.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    self.spans.append(ReceivedSpan(span.name, span.trace_id.hex(),
                                                   resource.get("service.name", ""), attributes))

    def of_workflow(self, workflow_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.attributes.get("temporalWorkflowID") == workflow_id]


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


# -------------------------------------------------------------------------------------- helpers
@contextlib.asynccontextmanager
async def scripted_worker(client: Client, settings: Settings, deps: Deps) -> AsyncIterator[ScriptedSteps]:
    """Real workflows and mirror activities, scripted steps (all skipped), on ``client``."""
    steps = ScriptedSteps(deps, skip_all=True)
    mirror = ProjectActivities(deps)
    async with Worker(client, task_queue=settings.task_queue, workflows=WORKFLOWS,
                      activities=[mirror.begin_provisioning, mirror.set_project_status, mirror.mark_step,
                                  *steps.activities()]):
        yield steps


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lbls, v in found if n == name and labels.items() <= lbls.items())


# --------------------------------------------------------------------------------------- metrics
async def test_a_client_with_the_worker_runtime_serves_temporal_sdk_metrics(
    make_settings: Callable[..., Settings], deps: Deps, tenant_name: Callable[[], str],
) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = make_settings(worker_metrics_address=address)
    runtime = telemetry.worker_runtime(settings)
    assert runtime is not None and telemetry.worker_runtime(settings) is runtime  # one per process
    client = await connect(settings, runtime=runtime)
    assert (await connect(settings, runtime=telemetry.worker_runtime(settings))).service_client  # no rebind
    project = (await deps.store.create_project(
        name=tenant_name(), kind=ProjectKind.PROJECT, steps=PROJECT_STEP_NAMES)).project
    async with scripted_worker(client, settings, deps):
        handle = await start_provisioning(client, settings, project)
        await handle.result()

    async def scraped() -> list[tuple[str, dict[str, str], float]] | None:
        found = samples(httpx.get(f"http://{address}/metrics", timeout=5).text)
        done = total(found, "temporal_workflow_completed_total", task_queue=settings.task_queue)
        return found if done else None

    found = await eventually(scraped, timeout=10)
    assert total(found, "temporal_workflow_completed_total", task_queue=settings.task_queue,
                 workflow_type="ProvisionProjectWorkflow") == 1
    for step in PROJECT_STEP_NAMES:
        assert total(found, "temporal_activity_execution_latency_count", task_queue=settings.task_queue,
                     activity_type=step) == 1, step


def test_an_address_in_use_is_a_configuration_error_naming_the_setting(
    make_settings: Callable[..., Settings],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ConfigurationError, match="TENANTFLOW_WORKER_METRICS_ADDRESS.*in use"):
            telemetry.worker_runtime(make_settings(worker_metrics_address=address))


def test_without_an_address_the_worker_uses_the_default_runtime(settings: Settings) -> None:
    assert settings.worker_metrics_address == ""
    assert telemetry.worker_runtime(settings) is None


@pytest.mark.parametrize("address", ["9464", ":9464", "localhost", "host:port", "host:0", "host:70000"])
def test_a_bad_worker_metrics_address_is_refused(make_settings: Callable[..., Settings],
                                                 address: str) -> None:
    with pytest.raises(ValidationError, match="is not host:port"):
        make_settings(worker_metrics_address=address)


# --------------------------------------------------------------------------------------- tracing
async def test_runs_started_through_the_api_are_traced_into_workflows_and_activities(
    make_settings: Callable[..., Settings], deps: Deps, otlp: OtlpReceiver, tenant_name: Callable[[], str],
) -> None:
    settings = make_settings(otel_exporter_otlp_endpoint=otlp.url, otel_service_name="tenantflow-test",
                             otel_exporter_otlp_headers="x-api-key=collector%20key, x-scope = tf")
    worker_client = await connect(settings)
    assert [type(i).__name__ for i in worker_client.config()["interceptors"]] == ["TracingInterceptor"]
    async with scripted_worker(worker_client, settings, deps), open_api(settings, headers=AUTH) as api:
        created = (await api.post("/v1/projects", json={"name": tenant_name()})).json()
        handle = worker_client.get_workflow_handle(created["workflow_id"])
        await handle.result()
    assert telemetry.flush_spans()

    spans = await eventually(lambda: otlp.of_workflow(created["workflow_id"]) or None, timeout=10)
    names = {s.name for s in spans}
    assert {"StartWorkflow:ProvisionProjectWorkflow", "RunWorkflow:ProvisionProjectWorkflow",
            "RunActivity:begin_provisioning"} <= names
    assert {f"RunActivity:{step}" for step in PROJECT_STEP_NAMES} <= names
    # One trace, from the API's request to the last activity, under the configured service name.
    assert len({s.trace_id for s in spans}) == 1
    assert {s.service for s in spans} == {"tenantflow-test"}
    # The collector's headers (its API key) came with every export.
    assert {(h["x-api-key"], h["x-scope"]) for h in otlp.headers} == {("collector key", "tf")}


async def test_without_an_endpoint_nothing_is_traced_or_even_imported(settings: Settings) -> None:
    client = await connect(settings)
    assert client.config()["interceptors"] == []
    # A fresh process: the API and the worker loaded, clients' interceptors asked for, and still
    # no OpenTelemetry SDK, exporter or Temporal interceptor module in memory.
    probe = (
        "import json, sys, api.main, worker\n"
        "from tenantflow import telemetry\n"
        "from tenantflow.settings import get_settings\n"
        "assert telemetry.tracing_interceptors(get_settings()) == []\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk',"
        " 'opentelemetry.exporter', 'temporalio.contrib.opentelemetry')))))\n"
    )
    env = {**os.environ, **to_env(settings), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(("url", "message"), [
    ("127.0.0.1:4318", "is not an http(s)://"),
    ("grpc://127.0.0.1:4317", "is not an http(s)://"),
    ("http://", "is not an http(s)://"),
    ("http://collector:4318/?x=1", "is not an http(s)://"),
    ("http://user:pw@collector:4318", "must not hold credentials"),
])
def test_a_bad_collector_url_is_refused(make_settings: Callable[..., Settings], url: str,
                                        message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        make_settings(otel_exporter_otlp_endpoint=url)


def test_malformed_collector_headers_are_refused_without_quoting_them(
    make_settings: Callable[..., Settings],
) -> None:
    with pytest.raises(ValidationError, match="header 2 is not key=value") as raised:
        make_settings(otel_exporter_otlp_headers="x-api-key=k1,sk-live-0123456789")
    assert "sk-live" not in str(raised.value) and "k1" not in str(raised.value)


def test_the_collector_url_is_a_base_url(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(otel_exporter_otlp_endpoint="https://collector.example:4318/")
    assert settings.otel_exporter_otlp_endpoint + telemetry.TRACES_PATH == "https://collector.example:4318/v1/traces"


# --------------------------------------------------------------------------- the worker process
async def test_the_worker_process_serves_its_metrics_and_continues_the_api_s_traces(
    make_settings: Callable[..., Settings], otlp: OtlpReceiver, tenant_name: Callable[[], str],
) -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = make_settings(worker_metrics_address=address, otel_exporter_otlp_endpoint=otlp.url,
                             otel_service_name="tenantflow-worker")
    api_settings = settings.model_copy(update={"otel_service_name": "tenantflow-api",
                                               "worker_metrics_address": ""})
    worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env={**os.environ, **to_env(settings)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async with open_api(api_settings, headers=AUTH) as api:
            created = (await api.post("/v1/projects", json={"name": tenant_name()})).json()

            async def online() -> bool:
                return (await api.get(f"/v1/projects/{created['id']}")).json()["status"] == "online"

            await eventually(online, timeout=60)
        found = samples(httpx.get(f"http://{address}/metrics", timeout=5).text)
        assert total(found, "temporal_workflow_completed_total", task_queue=settings.task_queue,
                     workflow_type="ProvisionProjectWorkflow") == 1
        worker.send_signal(signal.SIGTERM)  # a clean stop sends the spans still batched
        assert await asyncio.to_thread(worker.wait, 30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert telemetry.flush_spans()  # this process' (the API's) spans

    spans = otlp.of_workflow(created["workflow_id"])
    by_service = {service: {s.name for s in spans if s.service == service}
                  for service in ("tenantflow-api", "tenantflow-worker")}
    assert "StartWorkflow:ProvisionProjectWorkflow" in by_service["tenantflow-api"]
    assert {"RunWorkflow:ProvisionProjectWorkflow", "RunActivity:create_tenant_database",
            "RunActivity:verify_services"} <= by_service["tenantflow-worker"]
    assert len({s.trace_id for s in spans}) == 1  # the worker's spans continue the API's trace
