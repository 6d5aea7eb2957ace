"""What the Temporal client carries for observability: the SDK's Prometheus metrics and tracing.

Both are off unless configured, and both are made once per process, because both own something
that must not be made twice: a Temporal ``Runtime`` with Prometheus binds its ``host:port`` (a
second one would fail on the port) and runs its own threads; a ``TracerProvider`` runs the batch
exporter's thread and flushes it at exit.

- ``worker_runtime(settings)``: the ``Runtime`` whose client serves the SDK's metrics (workflow
  and activity counts and latencies, task queue polls) at ``http://<worker_metrics_address>/metrics``.
  Only the worker asks for it; the API, which shares the settings, must not bind the same port.
- ``tracing_interceptors(settings)``: Temporal's ``TracingInterceptor`` when
  ``otel_exporter_otlp_endpoint`` is set. On the client, it makes spans for what the client
  starts (``StartWorkflow:...``) and, in a worker built on that client, for every workflow and
  activity it runs (``RunWorkflow:...``, ``RunActivity:...``), linked across processes through
  the workflow's headers. Spans go through a ``BatchSpanProcessor`` to an OTLP/HTTP exporter.

The tracer provider is ours, passed to the interceptor, never installed as the global one: nothing
else in the process changes when tracing is on. When it is off, OpenTelemetry's SDK and the
interceptor are not even imported.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from tenantflow.errors import ConfigurationError
from tenantflow.settings import Settings, otlp_headers

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from temporalio.client import Interceptor

TRACES_PATH = "/v1/traces"  # the OTLP/HTTP path of spans, under the collector's base URL


def worker_runtime(settings: Settings) -> Runtime | None:
    """The Temporal runtime that serves the SDK's metrics, or None when they are off.

    The same runtime for the same address, however often it is asked for (see the module docstring).

    Raises:
        ConfigurationError: the address cannot be listened on (in use, or not this machine's).
    """
    if not settings.worker_metrics_address:
        return None
    try:
        return _prometheus_runtime(settings.worker_metrics_address)
    except ValueError as exc:  # the SDK's only report of a port in use or an unknown host
        raise ConfigurationError(
            f"cannot serve the worker's metrics on {settings.worker_metrics_address} "
            f"(TENANTFLOW_WORKER_METRICS_ADDRESS): {exc}"
        ) from exc


@functools.cache
def _prometheus_runtime(bind_address: str) -> Runtime:
    # Temporal's own metric names, labels and units (durations in milliseconds), as Temporal
    # documents its SDK metrics: no renaming here.
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


def tracing_interceptors(settings: Settings) -> list[Interceptor]:
    """The client interceptors that trace runs: Temporal's ``TracingInterceptor``, or none."""
    if not settings.otel_exporter_otlp_endpoint:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    provider = _tracer_provider(settings.otel_exporter_otlp_endpoint, settings.otel_service_name,
                                otlp_headers(settings.otel_exporter_otlp_headers))
    # Workflow spans even for runs started without a traced client (the Temporal CLI, the Web UI,
    # an API without tracing): every run of a traced worker shows up.
    return [TracingInterceptor(provider.get_tracer(__name__), always_create_workflow_spans=True)]


def _tracer_provider(endpoint: str, service_name: str, headers: dict[str, str]) -> TracerProvider:
    key = (endpoint, service_name, tuple(sorted(headers.items())))
    if key not in _tracer_providers:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The provider flushes and stops its exporter at interpreter exit (shutdown_on_exit).
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        exporter = OTLPSpanExporter(endpoint=endpoint + TRACES_PATH, headers=headers)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _tracer_providers[key] = provider
    return _tracer_providers[key]


_tracer_providers: dict[tuple[str, str, tuple[tuple[str, str], ...]], TracerProvider] = {}


def flush_spans(*, timeout_seconds: float = 5.0) -> bool:
    """Send the spans still waiting in the batch processors now (False if that timed out).

    Not needed before exit (the providers flush then); for a caller that wants spans out at once.
    """
    timeout_ms = int(timeout_seconds * 1000)
    return all([provider.force_flush(timeout_ms) for provider in _tracer_providers.values()])
