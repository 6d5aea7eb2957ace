"""The yardstick for reads: a plain FastAPI + psycopg-pool route that answers
``GET /v1/projects/{id}`` with the same document as tenantflow's API, from one SQL query.

It checks the same Bearer token, reads the same mirror database, and Postgres builds the whole JSON
document (project, graph info, step rows in catalog order) in one statement; there is no ORM, no
second query, no model validation. The harness serves it with uvicorn in a subprocess, started the
way the dev stack starts the API (same server, same defaults: one process, access log on), so
the gap between the two is what tenantflow's route does on top of the same work.

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

import httpx
from fastapi import FastAPI, Header, HTTPException, Response
from psycopg_pool import AsyncConnectionPool

from bench.stack import BenchError, Target
from devstack.ports import free_port
from tenantflow.catalog import STEPS_BY_KIND, TEARDOWN_STEPS_BY_KIND, ProjectKind

ROOT = Path(__file__).resolve().parent.parent
DATABASE_ENV, TOKEN_ENV = "BENCH_YARDSTICK_DATABASE_URL", "BENCH_YARDSTICK_TOKEN"

# The step order of tenantflow's StepOut.from_rows: the kind's steps, then its teardown, unknown last.
_ORDER = {kind: [str(step) for step in (*STEPS_BY_KIND[kind], *TEARDOWN_STEPS_BY_KIND[kind])]
          for kind in ProjectKind}
DOCUMENT = """
SELECT json_build_object(
    'id', p.id, 'name', p.name, 'kind', p.kind, 'status', p.status, 'workflow_id', p.workflow_id,
    'graph', CASE WHEN p.graph_backend IS NULL AND p.graph_database IS NULL THEN NULL
             ELSE json_build_object(
                 'backend', p.graph_backend, 'mode', p.graph_mode, 'database', p.graph_database,
                 'status', p.graph_status, 'uri', p.graph_uri, 'http_uri', p.graph_http_uri,
                 'username', p.graph_username) END,
    'created_at', p.created_at, 'updated_at', p.updated_at,
    'steps', COALESCE((
        SELECT json_agg(json_build_object(
                   'name', s.step_name, 'run_kind', s.run_kind, 'status', s.status,
                   'started_at', s.started_at, 'completed_at', s.completed_at,
                   'retry_count', s.retry_count, 'attempt', s.attempt,
                   'error_message', s.error_message, 'error_details', s.error_details,
                   'result', s.result, 'attempts', NULL)
               ORDER BY COALESCE(array_position(
                            CASE p.kind WHEN 'user' THEN %(user)s::text[] ELSE %(project)s::text[] END,
                            s.step_name::text), 2147483647),
                        s.created_at, s.step_name)
        FROM provisioning_steps s WHERE s.project_id = p.id), '[]'::json))::text
FROM projects p
WHERE p.id = %(id)s
"""


def create_app() -> FastAPI:
    """The yardstick app (``uvicorn --factory bench.yardstick:create_app``)."""
    database_url, token = os.environ[DATABASE_ENV], os.environ[TOKEN_ENV].encode()
    pool = AsyncConnectionPool(database_url, min_size=2, max_size=10, open=False,
                               kwargs={"autocommit": True, "options": "-c TimeZone=UTC"})

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
    async def project(project_id: uuid.UUID, authorization: str = Header(default="")) -> Response:
        if not hmac.compare_digest(authorization.encode(), b"Bearer " + token):
            raise HTTPException(401, "missing or invalid token", headers={"WWW-Authenticate": "Bearer"})
        async with pool.connection() as conn:
            cursor = await conn.execute(DOCUMENT, {"id": project_id, "user": _ORDER[ProjectKind.USER],
                                                   "project": _ORDER[ProjectKind.PROJECT]})
            row = await cursor.fetchone()
        if row is None:
            raise HTTPException(404, f"no project with id {project_id}")
        return Response(content=row[0], media_type="application/json")

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
