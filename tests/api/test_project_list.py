"""Finding tenants: ``GET /v1/projects`` filters and its cursor, on rows written straight through the
Store (no workflows), and a walk over 10 000 tenants that stays index-bound page after page."""

from __future__ import annotations

import base64
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from activities.deps import Deps
from api.pagination import encode_cursor
from tenantflow.catalog import STEPS_BY_KIND, ProjectKind, ProjectStatus, StepName
from tenantflow.models import Project
from tenantflow.store import Keyset, ProjectQuery, project_page_statement


async def walk(api: httpx.AsyncClient, *, stop: Callable[[dict[str, Any]], bool] = lambda _: False,
               cursor: str | None = None, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page from ``cursor`` on, following ``next_cursor``, until the last page or a ``stop`` item."""
    pages: list[list[dict[str, Any]]] = []
    while True:
        response = await api.get("/v1/projects", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        items = [item for item in body["items"] if not stop(item)]
        pages.append(items)
        cursor = body["next_cursor"]
        if cursor is None or len(items) < len(body["items"]):
            return pages


def names(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [item["name"] for page in pages for item in page]


async def make_tenants(deps: Deps, specs: list[tuple[str, ProjectKind]]) -> list[Project]:
    made = []
    for name, kind in specs:
        created = await deps.store.create_project(name=name, kind=kind, steps=STEPS_BY_KIND[kind])
        made.append(created.project)
    return made


# ------------------------------------------------------------------------------ filters and cursor
async def test_filters_select_the_tenants_and_pages_walk_them_in_order(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    p = tenant_name()
    specs = [(f"{p}-{i}", ProjectKind.PROJECT) for i in range(6)]
    specs += [(f"{p}-u{i}", ProjectKind.USER) for i in range(2)]
    made = await make_tenants(deps, specs)
    await deps.store.set_project_status(made[0].id, ProjectStatus.ONLINE)
    await deps.store.set_project_status(made[1].id, ProjectStatus.ONLINE)
    await deps.store.set_project_status(made[2].id, ProjectStatus.FAILED)
    await deps.store.step_failed(
        made[2].id, StepName.GENERATE_API_KEYS, generation=0, message="x", details={}
    )
    await deps.store.set_project_status(made[3].id, ProjectStatus.DELETED)
    all_names = [name for name, _ in specs]

    # 8 tenants by 3: full, full, partial; and no page repeats or skips one.
    pages = await walk(api, name_prefix=p, limit=3)
    assert [len(page) for page in pages] == [3, 3, 2]
    assert names(pages) == all_names
    # 6 projects by 3: the second page is the last (no empty third page).
    assert [len(page) for page in await walk(api, name_prefix=p, kind="project", limit=3)] == [3, 3]

    async def listed(**params: Any) -> list[str]:
        return names(await walk(api, name_prefix=p, limit=100, **params))

    assert await listed(kind="user") == all_names[6:]
    assert await listed(status="online") == all_names[:2]
    assert await listed(status="deleted") == [all_names[3]]
    assert await listed(failed_step="generate_api_keys") == [all_names[2]]
    assert await listed(failed_step="generate_api_keys", status="online") == []
    assert await listed(failed_step="create_tenant_database") == []
    assert await listed(status="pending", kind="project") == all_names[4:6]


async def test_name_prefix_is_literal(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    # LIKE wildcards and the escape character in a prefix match only themselves. (The Store takes
    # any name; the API's own names never hold these characters.)
    p = tenant_name()
    await make_tenants(deps, [(f"{p}-a", ProjectKind.PROJECT), (f"{p}_b", ProjectKind.PROJECT),
                              (f"{p}%c", ProjectKind.PROJECT), (f"{p}\\d", ProjectKind.PROJECT)])

    async def listed(prefix: str) -> list[str]:
        return names(await walk(api, name_prefix=prefix, limit=100))

    assert await listed(p) == [f"{p}-a", f"{p}_b", f"{p}%c", f"{p}\\d"]
    assert await listed(f"{p}_") == [f"{p}_b"]
    assert await listed(f"{p}%") == [f"{p}%c"]
    assert await listed(f"{p}\\") == [f"{p}\\d"]
    assert await listed(f"{p}-") == [f"{p}-a"]
    assert await listed(p[:-1] + "_") == []  # '_' is not "any character"


async def test_a_tenant_created_during_a_walk_is_seen_once_at_the_end(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    p = tenant_name()
    await make_tenants(deps, [(f"{p}-{i}", ProjectKind.PROJECT) for i in range(4)])
    first = (await api.get("/v1/projects", params={"name_prefix": p, "limit": 2})).json()
    await make_tenants(deps, [(f"{p}-new", ProjectKind.PROJECT)])
    rest = await walk(api, name_prefix=p, limit=2, cursor=first["next_cursor"])
    assert [i["name"] for i in first["items"]] + names(rest) == [f"{p}-{i}" for i in range(4)] + [f"{p}-new"]


async def test_a_malformed_cursor_is_422_with_a_clear_message(api: httpx.AsyncClient) -> None:
    def b64(raw: str) -> str:
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    for cursor in ["!!!", "a", b64("hello"), b64(f"2026-01-01T00:00:00|{uuid.uuid4()}"),  # no offset
                   b64("2026-01-01T00:00:00+00:00|not-a-uuid"), b64(f"yesterday|{uuid.uuid4()}"), "x" * 201]:
        response = await api.get("/v1/projects", params={"cursor": cursor})
        assert response.status_code == 422, cursor
        (error,) = response.json()["detail"]
        assert error["loc"] == ["query", "cursor"]
        if len(cursor) <= 200:
            assert "malformed cursor" in error["msg"] and "next_cursor" in error["msg"]
    good = encode_cursor(Keyset(datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4()))
    assert (await api.get("/v1/projects", params={"cursor": good, "limit": 1})).status_code == 200


# --------------------------------------------------------------------------------------- at scale
BULK = 10_000
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}
BULK_INSERT = text("""
WITH made AS (
    INSERT INTO projects (id, name, kind, status, workflow_id, created_at, updated_at)
    SELECT gen_random_uuid(), CAST(:prefix AS text) || '-' || lpad(i::text, 5, '0'), 'project',
           -- one in a hundred has failed (failures are rare), the rest spread over three statuses
           CASE WHEN i % 100 = 2 THEN 'failed' ELSE (ARRAY['pending', 'online', 'deleted'])[1 + i % 3] END,
           'bulk-' || CAST(:prefix AS text) || '-' || i,
           -- three tenants per millisecond: the id breaks the ties
           CAST(:t0 AS timestamptz) + (i / 3) * interval '1 millisecond', CAST(:t0 AS timestamptz)
    FROM generate_series(0, :n - 1) AS i
    RETURNING id, status
), done AS (
    INSERT INTO provisioning_steps (id, project_id, step_name, status, retry_count, created_at, run_kind)
    SELECT gen_random_uuid(), id, 'create_tenant_database', 'success', 0, CAST(:t0 AS timestamptz),
           'provision'
    FROM made
)
INSERT INTO provisioning_steps (id, project_id, step_name, status, retry_count, created_at, run_kind)
SELECT gen_random_uuid(), id, 'generate_api_keys', 'failed', 0, CAST(:t0 AS timestamptz), 'provision'
FROM made WHERE status = 'failed'
""")


async def explain(deps: Deps, query: ProjectQuery) -> dict[str, Any]:
    statement = project_page_statement(query)
    compiled = statement.compile(dialect=deps.store.engine.dialect)
    async with deps.store.engine.connect() as conn:
        explained = "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled)
        result = await conn.exec_driver_sql(explained, compiled.params)
        plan = result.scalar_one()
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in nodes(child))]


async def test_ten_thousand_tenants_are_walked_page_by_page_through_indexes(
    api: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str]
) -> None:
    prefix = tenant_name()
    # A window of time of this test's own, long before anything else in the database.
    t0 = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(3000))
    async with deps.store.engine.begin() as conn:
        await conn.execute(BULK_INSERT, {"prefix": prefix, "t0": t0, "n": BULK})
        await conn.execute(text("ANALYZE projects"))
        await conn.execute(text("ANALYZE provisioning_steps"))
    try:
        first = Keyset(t0 - timedelta(microseconds=1), uuid.UUID(int=0))  # just before the window
        start = encode_cursor(first)

        def ours(item: dict[str, Any]) -> bool:
            return item["name"].startswith(prefix + "-")

        began = time.monotonic()
        pages = await walk(api, cursor=start, limit=100, stop=lambda item: not ours(item))
        elapsed = time.monotonic() - began
        walked = [item for page in pages for item in page]
        assert len(walked) == BULK and len({item["id"] for item in walked}) == BULK
        order = [(datetime.fromisoformat(i["created_at"]), uuid.UUID(i["id"])) for i in walked]
        assert order == sorted(order)
        assert sorted(i["name"] for i in walked) == [f"{prefix}-{i:05d}" for i in range(BULK)]
        assert elapsed < 60, f"100 pages took {elapsed:.1f}s"

        failed = names(await walk(api, cursor=start, limit=100, failed_step="generate_api_keys",
                                  stop=lambda item: not ours(item)))
        assert sorted(failed) == [f"{prefix}-{i:05d}" for i in range(2, BULK, 100)]

        # The first and the last page of our window, unfiltered and filtered: each query reads
        # about a page of rows, through an index, never the whole table.
        last = Keyset(datetime.fromisoformat(walked[-101]["created_at"]), uuid.UUID(walked[-101]["id"]))
        for after, filters in itertools.product(
            (first, last), ({}, {"status": ProjectStatus.ONLINE}, {"failed_step": StepName.GENERATE_API_KEYS})
        ):
            query = ProjectQuery(limit=100, after=after, **filters)
            plan = nodes(await explain(deps, query))
            assert not [n for n in plan if n["Node Type"] == "Seq Scan"], (query, plan)
            scans = [n for n in plan if n.get("Relation Name") == "projects"]
            assert scans and all(n["Node Type"] in INDEX_SCANS for n in scans), (query, plan)
            read = sum((n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"]
                       for n in scans)
            assert read <= 1000, (query, plan)  # a page's worth, not the 10 000
    finally:
        async with deps.store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM projects WHERE name LIKE :p"), {"p": prefix + "-%"})
