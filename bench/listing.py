"""Section ``listing``: walking ``GET /v1/projects`` by cursor over 10,000 tenants.

Keyset pagination should find the deepest page as fast as the first. With fewer tenants than
``list_size`` in the mirror, the difference is inserted straight into the ``projects`` table, one
statement per ``INSERT_BATCH`` rows: rows named ``bench-list-<n>``, kind ``project``, status
``online``, with nothing behind them (no run, no database, no step rows). They are bench data, kept
for the next run; nothing else is touched. (Batches, because the mirror's event trigger takes an
advisory lock per row, held to commit: Postgres' lock table holds some 19,000 on the dev stack.)

Then every page is fetched once, following ``next_cursor``, and the first page and the deepest
full page are each timed ``page_fetches`` times, alternately (median).
"""

from __future__ import annotations

import time

import httpx
import psycopg

from bench.plan import Bench
from bench.report import Goal
from bench.stats import median, ms
from bench.tenants import api_client

LISTING_GOAL = Goal(1.5)  # deepest page / first page
LIST_PREFIX = "bench-list-"
INSERT_BATCH = 5_000
INSERT = """
INSERT INTO projects (id, name, kind, status, status_seq, workflow_id, created_at, updated_at)
SELECT gen_random_uuid(), %(prefix)s || n, 'project', 'online', 0, %(prefix)s || n,
       clock_timestamp(), clock_timestamp()
FROM generate_series(%(first)s::int, %(last)s::int) AS n
"""
# Executed without parameters, so its % is sent as it is.
LAST_NUMBER = """
SELECT COALESCE(max(substring(name FROM '^bench-list-([0-9]+)$')::int), 0) FROM projects
WHERE name LIKE 'bench-list-%'
"""


async def ensure_tenants(bench: Bench) -> tuple[int, int]:
    """Make the mirror hold at least ``list_size`` tenants; (tenants now, rows inserted)."""
    async with await psycopg.AsyncConnection.connect(bench.target.mirror_url, autocommit=True) as conn:
        count = (await (await conn.execute("SELECT count(*) FROM projects")).fetchone() or (0,))[0]
        missing = bench.plan.list_size - count
        if missing <= 0:
            return count, 0
        last = (await (await conn.execute(LAST_NUMBER)).fetchone() or (0,))[0]
        for first in range(last + 1, last + missing + 1, INSERT_BATCH):
            end = min(first + INSERT_BATCH - 1, last + missing)
            await conn.execute(INSERT, {"prefix": LIST_PREFIX, "first": first, "last": end})
        return count + missing, missing


async def _fetch(api: httpx.AsyncClient, limit: int, cursor: str | None) -> tuple[float, dict]:
    params: dict[str, str | int] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    started = time.perf_counter()
    response = await api.get("/v1/projects", params=params)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, response.json()


async def listing_section(bench: Bench) -> None:
    plan, report = bench.plan, bench.report
    report.section("listing", f"GET /v1/projects?limit={plan.page_size} by cursor over ≥ {plan.list_size:,} "
                              "tenants: the first page against the deepest")
    started = time.perf_counter()
    total, inserted = await ensure_tenants(bench)
    if inserted:
        report.say(f"inserted {inserted:,} rows {LIST_PREFIX}<n> (status online, nothing behind them) into "
                   f"the mirror in {time.perf_counter() - started:.1f} s: bench data, kept for later runs")
    async with api_client(bench, connections=2) as api:
        pages: list[tuple[str | None, int, float]] = []  # cursor, items, seconds
        cursor: str | None = None
        walk_started = time.perf_counter()
        while True:
            elapsed, page = await _fetch(api, plan.page_size, cursor)
            pages.append((cursor, len(page["items"]), elapsed))
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
        walk = time.perf_counter() - walk_started
        full = [i for i, (_, items, _) in enumerate(pages) if items == plan.page_size] or [len(pages) - 1]
        deepest = full[-1]
        first_times, deep_times = [], []
        for _ in range(plan.page_fetches):
            first_times.append((await _fetch(api, plan.page_size, None))[0])
            deep_times.append((await _fetch(api, plan.page_size, pages[deepest][0]))[0])
    rows = sum(items for _, items, _ in pages)
    report.say(f"{rows:,} tenants in {len(pages)} pages, walked in {walk:.1f} s "
               f"(page p50 {ms(median(p[2] for p in pages))})")
    report.say(f"first page: median {ms(median(first_times))}; page {deepest + 1} (the deepest full one): "
               f"median {ms(median(deep_times))}  ({plan.page_fetches} fetches each)")
    report.record(tenants=total, inserted=inserted, pages=len(pages), walk_s=walk,
                  first_page_ms=median(first_times) * 1000, deepest_page_ms=median(deep_times) * 1000,
                  deepest_page=deepest + 1)
    report.ratio("deepest page / first page", median(deep_times) / median(first_times), LISTING_GOAL)
