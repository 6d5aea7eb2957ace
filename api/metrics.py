"""``GET /metrics``: the API's and the mirror's metrics in Prometheus' text format.

Two sources, read differently:

- Request latency, measured in this process by ``RequestTimer``, a pure ASGI middleware (Starlette's
  ``BaseHTTPMiddleware`` runs the response body through a stream and task group of its own, known
  to break long streaming responses such as the event stream). It times a request up to the start
  of its response, so a stream that stays open for minutes counts as the time it took to start,
  and labels it with the route's template (``/v1/projects/{ref}``), never the raw path: the number
  of series stays bounded whatever clients send.
- Tenants and step attempts, read from the mirror tables at scrape time, aggregated in SQL (two
  queries, one pass over each table). ``provisioning_step_attempts`` is append-only and each row
  is closed once, so its
  counts only grow: they are counters and histograms that hold across any number of API
  processes and workers, and a restart loses nothing.

The database is read in the (async) route before rendering; prometheus_client's collectors are
sync, so they only ever see numbers already fetched and never block the event loop. Each app owns
its registry (not prometheus_client's global one), so several apps in one process keep apart.

If the mirror cannot be read, the scrape still answers, with ``tenantflow_mirror_up 0`` and the
request metrics only: Prometheus keeps the latency history of the moment it matters.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import Float, Select, case, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import SettingsDep, StoreDep
from tenantflow.catalog import ProjectKind, ProjectStatus
from tenantflow.models import Project, ProvisioningStepAttempt

log = logging.getLogger(__name__)

P = Project.__table__  # type: ignore[attr-defined]
A = ProvisioningStepAttempt.__table__  # type: ignore[attr-defined]

# Upper bounds (seconds) of the step-duration buckets: scripted steps take milliseconds, a graph
# database minutes, an outage ridden out up to the outage budget (10-45 min).
STEP_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)
IN_FLIGHT: frozenset[str] = frozenset(
    {ProjectStatus.PENDING, ProjectStatus.PROVISIONING, ProjectStatus.DEPROVISIONING}
)
MIRROR_TIMEOUT_SECONDS = 5.0
UNMATCHED_ROUTE = "<unmatched>"  # requests no route answers (404s): one series, not one per path
MIRROR_UP = "1 if the mirror tables were read for this scrape, else 0."
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# ------------------------------------------------------------------------------- request latency
class ApiMetrics:
    """The metrics this API process measures itself, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "tenantflow_http_request_duration_seconds",
            "Time from a request's arrival to the start of its response, by route template.",
            ["method", "route", "status"], registry=self.registry,
        )


class RequestTimer:
    """Pure ASGI middleware: observes every HTTP request in ``histogram`` when its response starts."""

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        observed = False

        def observe(status_code: int) -> None:
            nonlocal observed
            observed = True
            self.histogram.labels(_method(scope), route_template(scope, root_path), str(status_code)).observe(
                time.perf_counter() - started
            )

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not observed:
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except BaseException:
            if not observed:  # the server answers 500 for what escaped the app
                observe(status.HTTP_500_INTERNAL_SERVER_ERROR)
            raise


def route_template(scope: Scope, root_path: str = "") -> str:
    """The path template of the route that took the request (``/v1/projects/{ref}``); for a mounted
    app (static files) its prefix and ``/{path}``; ``<unmatched>`` when nothing took it."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if isinstance(template, str):
        return template
    mounted_at = scope.get("root_path", "")
    if mounted_at != root_path and mounted_at.startswith(root_path):
        return mounted_at[len(root_path):] + "/{path}"
    return UNMATCHED_ROUTE


def _method(scope: Scope) -> str:
    method = scope.get("method", "")
    return method if method in HTTP_METHODS else "other"  # clients choose methods: keep it bounded


# ------------------------------------------------------------------------------ the mirror tables
@dataclass(frozen=True)
class StepAttempts:
    """The finished attempts of one step with one outcome, and how long they took."""

    step: str
    outcome: str
    count: int
    seconds: float
    at_most: tuple[int, ...]  # cumulative: attempts that took at most STEP_BUCKETS[i] seconds


@dataclass(frozen=True)
class MirrorSnapshot:
    """What the mirror tables say at one scrape."""

    tenants: dict[tuple[str, str], int]  # (status, kind) -> tenants
    attempts: list[StepAttempts]
    running: dict[str, int]  # step -> attempts started and not finished


# width_bucket(x, thresholds) counts the thresholds <= x. Given the negated bounds, it counts the
# bounds >= a duration: Prometheus' ``le``, a duration equal to a bound included in its bucket.
_NEGATED_BOUNDS = sorted(-bound for bound in STEP_BUCKETS)


def attempts_statement() -> Select[Any]:
    """Attempts grouped by step, outcome and how many bucket bounds their duration is within; an
    unfinished attempt has no duration (NULL bucket). One pass over the table, one row per group."""
    seconds = case((A.c.finished_at.is_not(None),
                    func.greatest(func.date_part("epoch", A.c.finished_at - A.c.started_at), 0.0)))
    within = func.width_bucket(-seconds, literal(_NEGATED_BOUNDS, ARRAY(Float)))
    return (select(A.c.step_name, A.c.outcome, within, func.count(), func.coalesce(func.sum(seconds), 0.0))
            .group_by(A.c.step_name, A.c.outcome, within))


async def read_mirror(engine: AsyncEngine) -> MirrorSnapshot:
    """Two aggregate queries: tenants by status and kind, attempts by step, outcome and bucket."""
    tenants_query = select(P.c.status, P.c.kind, func.count()).group_by(P.c.status, P.c.kind)
    async with engine.connect() as conn:
        tenant_rows = (await conn.execute(tenants_query)).all()
        attempt_rows = (await conn.execute(attempts_statement())).all()
    finished: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
    running: dict[str, int] = {}
    for step, outcome, within, count, seconds in attempt_rows:
        if within is None:  # still running: closed later, with an outcome and a duration
            running[step] = running.get(step, 0) + count
        else:
            finished.setdefault((step, outcome), []).append((within, count, seconds))
    attempts = [_cumulate(step, outcome, groups) for (step, outcome), groups in finished.items()]
    return MirrorSnapshot({(s, k): n for s, k, n in tenant_rows}, attempts, running)


def _cumulate(step: str, outcome: str, groups: list[tuple[int, int, float]]) -> StepAttempts:
    """Bucket ``i`` (bound ``STEP_BUCKETS[i]``) holds the groups within at least ``N - i`` bounds."""
    n = len(STEP_BUCKETS)
    at_most = tuple(sum(count for within, count, _ in groups if within >= n - i) for i in range(n))
    return StepAttempts(step, outcome, sum(c for _, c, _ in groups), float(sum(s for _, _, s in groups)),
                        at_most)


def mirror_families(snapshot: MirrorSnapshot) -> Iterator[Metric]:
    """The snapshot as Prometheus metric families (see the README's metrics list)."""
    yield _gauge("tenantflow_mirror_up", MIRROR_UP, 1)
    tenants = GaugeMetricFamily("tenantflow_runs", "Tenants by project status and kind.",
                                labels=["status", "kind"])
    # Every pair, zeros included, so a query or an alert never meets an absent series.
    zeros = {(str(s), str(k)): 0 for s in ProjectStatus for k in ProjectKind}
    for (status_, kind), count in (zeros | snapshot.tenants).items():
        tenants.add_metric([status_, kind], count)
    yield tenants
    yield _gauge("tenantflow_runs_in_flight", "Tenants pending, provisioning or deprovisioning.",
                 sum(n for (status_, _), n in snapshot.tenants.items() if status_ in IN_FLIGHT))
    yield from _attempt_families(snapshot)


def _attempt_families(snapshot: MirrorSnapshot) -> Iterator[Metric]:
    labels = ["step", "outcome"]
    durations = HistogramMetricFamily(
        "tenantflow_step_duration_seconds",
        "Duration of finished step attempts (started to finished), by step and outcome.", labels=labels)
    attempts = CounterMetricFamily("tenantflow_step_attempts", "Finished step attempts, by step and outcome.",
                                   labels=labels)
    for a in snapshot.attempts:
        buckets = [(_le(bound), n) for bound, n in zip(STEP_BUCKETS, a.at_most, strict=True)]
        durations.add_metric([a.step, a.outcome], [*buckets, ("+Inf", a.count)], a.seconds)
        attempts.add_metric([a.step, a.outcome], a.count)
    running = GaugeMetricFamily("tenantflow_step_attempts_running", "Step attempts started and not finished.",
                                labels=["step"])
    for step, count in snapshot.running.items():
        running.add_metric([step], count)
    yield from (durations, attempts, running)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class Scrape:
    """What one scrape renders: this process' registry, then the mirror's families."""

    registry: CollectorRegistry
    mirror: Iterable[Metric]

    def collect(self) -> Iterable[Metric]:
        yield from self.registry.collect()
        yield from self.mirror


async def mirror_or_down(engine: AsyncEngine) -> list[Metric]:
    """The mirror's families, or only ``tenantflow_mirror_up 0`` when it cannot be read in time."""
    try:
        snapshot = await asyncio.wait_for(read_mirror(engine), MIRROR_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - a scrape reports the mirror down instead of failing
        # Only the type: driver messages can contain connection details.
        log.warning("metrics: the mirror tables could not be read: %s", type(exc).__name__)
        return [_gauge("tenantflow_mirror_up", MIRROR_UP, 0)]
    return list(mirror_families(snapshot))


# ------------------------------------------------------------------------------------ the route
_bearer = HTTPBearer(auto_error=False, scheme_name="MetricsToken",
                     description="TENANTFLOW_METRICS_TOKEN, or the API token.")


async def require_metrics_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept ``Authorization: Bearer`` with the metrics token (when one is set) or the API token.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` otherwise.
    """
    given = credentials.credentials.encode() if credentials else b""
    tokens = [t.get_secret_value().encode() for t in (settings.metrics_token, settings.api_token)]
    # Every token compared (constant time each); an empty token never authenticates anybody.
    matches = [bool(token) and hmac.compare_digest(given, token) for token in tokens]
    if not (given and any(matches)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid metrics token",
            headers={"WWW-Authenticate": "Bearer"},
        )


router = APIRouter(tags=["metrics"], dependencies=[Depends(require_metrics_token)])


async def _api_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
               401: {"description": "Missing or invalid metrics token."}},
)
async def metrics(
    request: Request, store: StoreDep, api_metrics: Annotated[ApiMetrics, Depends(_api_metrics)]
) -> Response:
    """The metrics (README, "Metrics and traces"); OpenMetrics if the scraper asks for it."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    mirror = await mirror_or_down(store.engine)
    return Response(encode(Scrape(api_metrics.registry, mirror)), media_type=content_type)


def install(app: FastAPI) -> None:
    """Time every request of ``app`` and serve ``GET /metrics`` from the app's own registry."""
    api_metrics = ApiMetrics()
    app.state.metrics = api_metrics
    app.add_middleware(RequestTimer, histogram=api_metrics.requests)
    app.include_router(router)

