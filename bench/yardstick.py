"""The yardstick for reads: a plain FastAPI + psycopg-pool route that answers
``GET /v1/projects/{id}`` with the same document as tenantflow's API, from one SQL query.

It is the route anyone would write first: the same Bearer check, one statement on the same mirror
database (the project joined to its step rows, in catalog order), the document assembled from the
rows as a dict and returned for FastAPI to encode; no ORM, no second query, no response model. The
harness serves it with uvicorn in a subprocess, started the way the dev stack starts the API (same
server, same defaults: one process, access log on), so the gap between the two is what
tenantflow's route does on top of the same work. (Having Postgres build the JSON text instead, with
``json_build_object``, measured nearly twice as fast again here: a further step, not the plain route.)

Configured through the environment, never the command line (``ps`` shows that to every user):
``BENCH_YARDSTICK_DATABASE_URL`` and ``BENCH_YARDSTICK_TOKEN``.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Header, HTTPException
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from bench.stack import BenchError, Target
from devstack.ports import free_port
from tenantflow.catalog import ProjectKind, step_order

ROOT = Path(__file__).resolve().parent.parent
DATABASE_ENV, TOKEN_ENV = "BENCH_YARDSTICK_DATABASE_URL", "BENCH_YARDSTICK_TOKEN"

# The step order of tenantflow's StepOut.from_rows (catalog.step_order), unknown steps last.
_ORDER = {kind: [str(step) for step in step_order(kind)] for kind in ProjectKind}
# One statement: the project joined to its step rows, in the order tenantflow's StepOut.from_rows
# shows them (the kind's steps, then its teardown, unknown ones last).
QUERY = """
SELECT p.id, p.name, p.kind, p.status, p.workflow_id, p.graph_backend, p.graph_mode, p.graph_database,
       p.graph_status, p.graph_uri, p.graph_http_uri, p.graph_username, p.created_at, p.updated_at,
       s.step_name, s.run_kind, s.status AS step_status, s.started_at, s.completed_at, s.retry_count,
       s.attempt, s.error_message, s.error_details, s.result
FROM projects p LEFT JOIN provisioning_steps s ON s.project_id = p.id
WHERE p.id = %(id)s
ORDER BY COALESCE(array_position(CASE p.kind WHEN 'user' THEN %(user)s::text[] ELSE %(project)s::text[] END,
                                 s.step_name::text), 2147483647), s.created_at, s.step_name
"""
GRAPH = ("backend", "mode", "database", "status", "uri", "http_uri", "username")


def document(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The API's ``ProjectDetail`` document from the rows of ``QUERY`` (one per step)."""
    p = rows[0]
    graph = None if p["graph_backend"] is None and p["graph_database"] is None else {
        name: p[f"graph_{name}"] for name in GRAPH}
    steps = [{"name": r["step_name"], "run_kind": r["run_kind"], "status": r["step_status"],
              "started_at": r["started_at"], "completed_at": r["completed_at"],
              "retry_count": r["retry_count"], "attempt": r["attempt"], "error_message": r["error_message"],
              "error_details": r["error_details"], "result": r["result"], "attempts": None}
             for r in rows if r["step_name"] is not None]
    return {"id": p["id"], "name": p["name"], "kind": p["kind"], "status": p["status"],
            "workflow_id": p["workflow_id"], "graph": graph, "created_at": p["created_at"],
            "updated_at": p["updated_at"], "steps": steps}


def create_app() -> FastAPI:
    """The yardstick app (``uvicorn --factory bench.yardstick:create_app``)."""
    database_url, token = os.environ[DATABASE_ENV], os.environ[TOKEN_ENV].encode()
    pool = AsyncConnectionPool(database_url, min_size=2, max_size=10, open=False,
                               kwargs={"autocommit": True})

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/projects/{project_id}")
    async def project(project_id: uuid.UUID, authorization: str = Header(default="")) -> dict[str, Any]:
        if not hmac.compare_digest(authorization.encode(), b"Bearer " + token):
            raise HTTPException(401, "missing or invalid token", headers={"WWW-Authenticate": "Bearer"})
        async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(QUERY, {"id": project_id, "user": _ORDER[ProjectKind.USER],
                                         "project": _ORDER[ProjectKind.PROJECT]})
            rows = await cursor.fetchall()
        if not rows:
            raise HTTPException(404, f"no project with id {project_id}")
        return document(rows)

    return app


@dataclass(frozen=True)
class Served:
    url: str
    pid: int


@contextlib.contextmanager
def serve(target: Target, *, start_timeout: float = 30.0) -> Iterator[Served]:
    """Run the yardstick against ``target``'s mirror on a free port until the block ends."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", DATABASE_ENV: target.mirror_url,
           TOKEN_ENV: target.api_token}
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "bench.yardstick:create_app",
           "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp:
        log = Path(tmp) / "yardstick.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        try:
            _wait_healthy(f"http://127.0.0.1:{port}/healthz", proc, log, start_timeout)
            yield Served(f"http://127.0.0.1:{port}", proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            output = log.read_text(errors="replace")[-2000:]
            raise BenchError(f"the yardstick exited ({proc.returncode}):\n{output}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"the yardstick did not answer within {timeout:.0f} s")
        time.sleep(0.1)
