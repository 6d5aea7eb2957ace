"""The console's pages and forms through HTTP, with real workflows and scripted steps: the list
(counts, filters, rows, paging), creating a tenant, a failed step on the tenant's page and the
Retry that resumes it, refusals shown as the API words them, and the delete confirmation."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Callable

import httpx

from activities.deps import Deps
from api.console.routes import PAGE_SIZE
from tenantflow.catalog import PROJECT_STEP_NAMES, ProjectKind, ProjectStatus, StepName
from tests.api.conftest import ScriptedSteps
from tests.conftest import eventually
from tests.console.conftest import log_in


def listed_names(page: str) -> list[str]:
    return re.findall(r'<tr data-tenant="([^"]+)">', page)


def row_of(page: str, name: str) -> str:
    found = re.search(rf'<tr data-tenant="{re.escape(name)}">(.*?)</tr>', page, re.S)
    assert found, f"{name} is not listed"
    return found.group(1)


def flash_of(page: str) -> str:
    found = re.search(r'<p class="flash flash-(ok|error)"[^>]*>(.*?)</p>', page, re.S)
    assert found, "no flash message on the page"
    return f"{found.group(1)}: {html.unescape(found.group(2).strip())}"


async def follow(client: httpx.AsyncClient, response: httpx.Response) -> str:
    """The page a form's 303 leads to."""
    assert response.status_code == 303, response.text
    return (await client.get(response.headers["location"])).text


async def status_of(deps: Deps, ref: str) -> str:
    project = await deps.store.get_project_by_ref(ref)
    assert project is not None
    return project.status


async def has_status(deps: Deps, ref: str, wanted: str) -> bool:
    return await status_of(deps, ref) == wanted


# ------------------------------------------------------------------------------------- the list
async def test_the_list_counts_filters_and_shows_the_failed_step(
    console: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str],
) -> None:
    store = deps.store
    p = tenant_name()
    made = {n: (await store.create_project(name=f"{p}-{n}", kind=kind, steps=PROJECT_STEP_NAMES)).project
            for n, kind in [("a", ProjectKind.PROJECT), ("b", ProjectKind.PROJECT), ("u", ProjectKind.USER)]}
    await store.set_project_status(made["a"].id, ProjectStatus.FAILED)
    await store.step_failed(made["a"].id, StepName.GENERATE_API_KEYS, generation=0,
                            message="keys <refused>", details={})
    await store.set_project_status(made["b"].id, ProjectStatus.ONLINE)
    await log_in(console)

    page = (await console.get("/console", params={"name": p})).text
    assert listed_names(page) == [f"{p}-u", f"{p}-b", f"{p}-a"]  # newest first
    failed_row = row_of(page, f"{p}-a")
    assert "generate_api_keys" in failed_row and "keys &lt;refused&gt;" in failed_row  # escaped
    assert 'class="badge status-failed">failed<' in failed_row
    assert "generate_api_keys" not in row_of(page, f"{p}-b")  # online: no current step
    counts = await store.count_by_status()
    assert f"<b>{counts['failed']}</b> failed, waiting for a person" in page
    in_flight = sum(counts.get(s, 0) for s in ("pending", "provisioning", "deprovisioning"))
    assert f"<b>{in_flight}</b> in flight" in page

    async def names(**params: str) -> list[str]:
        return listed_names((await console.get("/console", params={"name": p, **params})).text)

    assert await names(status="failed") == [f"{p}-a"]
    assert await names(kind="user") == [f"{p}-u"]
    assert await names(status="online", kind="project") == [f"{p}-b"]
    assert await names(status="deleted") == []
    assert listed_names((await console.get("/console", params={"name": f"{p}-b"})).text) == [f"{p}-b"]


async def test_bad_filters_are_a_400_page_saying_what_is_wrong(console: httpx.AsyncClient) -> None:
    await log_in(console)
    for params, said in [({"status": "sleeping"}, "unknown status 'sleeping'"),
                         ({"kind": "team"}, "unknown kind 'team'"),
                         ({"cursor": "not-a-cursor"}, "malformed page cursor"),
                         ({"name": "x" * 64}, "at most 63 characters")]:
        response = await console.get("/console", params=params)
        assert response.status_code == 400, params
        assert said in html.unescape(response.text)


async def test_the_list_pages_newest_first_with_the_keyset_cursor(
    console: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str],
) -> None:
    p = tenant_name()
    names = [f"{p}-{i:03d}" for i in range(PAGE_SIZE + 5)]
    for name in names:
        await deps.store.create_project(name=name, kind=ProjectKind.PROJECT, steps=PROJECT_STEP_NAMES)
    await log_in(console)
    newest_first = names[::-1]
    first = (await console.get("/console", params={"name": p})).text
    assert listed_names(first) == newest_first[:PAGE_SIZE]
    [next_url] = re.findall(r'<a href="([^"]+)">next page', first)
    second = (await console.get(html.unescape(next_url))).text
    assert listed_names(second) == newest_first[PAGE_SIZE:]
    assert "next page" not in second and "first page" in second


# ----------------------------------------------------------------------------- creating tenants
async def test_create_refusals_are_shown_as_the_api_words_them(
    console: httpx.AsyncClient, script: ScriptedSteps, tenant_name: Callable[[], str],
) -> None:
    token = await log_in(console)
    page = await follow(console, await console.post("/console/tenants", data={"name": "Bad Name!",
                                                                            "csrf_token": token}))
    assert flash_of(page).startswith("error: Not created: invalid project name 'Bad Name!': 3-40 characters")
    assert "Not created" not in (await console.get("/console")).text  # shown once

    name = tenant_name()
    form = {"name": name, "csrf_token": token}
    page = await follow(console, await console.post("/console/tenants", data=form))
    assert flash_of(page) == f"ok: Created {name}: provisioning has started."
    again = await follow(console, await console.post("/console/tenants", data=form))
    assert flash_of(again).startswith(f"ok: {name} exists already")


# ---------------------------------------------------------------------------- a tenant's page
async def test_a_failed_step_shows_its_error_and_retry_resumes_the_run(
    console: httpx.AsyncClient, deps: Deps, script: ScriptedSteps, tenant_name: Callable[[], str],
) -> None:
    script.fail_once.add("generate_api_keys")
    token = await log_in(console)
    name = tenant_name()
    created = await console.post("/console/tenants", data={"name": name, "csrf_token": token})
    tenant = created.headers["location"]
    await eventually(lambda: has_status(deps, name, "failed"), timeout=30)

    page = (await console.get(tenant)).text
    assert 'data-step="generate_api_keys" data-status="failed"' in page
    # The error, and its details as JSON.
    assert "scripted failure" in page and '"retry_state": "NON_RETRYABLE_FAILURE"' in html.unescape(page)
    assert 'id="retry"' in page and 'id="cancel"' in page and 'id="delete"' in page
    assert "data-live" not in page  # failed: settled, nothing to listen to
    assert re.search(r"/namespaces/default/workflows/provision-project-" + re.escape(name), page)

    retried = await follow(console, await console.post(f"{tenant}/retry", data={"csrf_token": token}))
    assert flash_of(retried) == "ok: Retrying generate_api_keys: the run resumes from that step."
    await eventually(lambda: has_status(deps, name, "online"), timeout=30)

    page = (await console.get(tenant)).text
    assert 'class="badge status-online">online<' in page
    assert 'id="retry"' not in page and 'id="cancel"' not in page and 'id="delete"' in page
    history = re.search(r'data-step="generate_api_keys".*?<details class="attempts">(.*?)</ol>', page, re.S)
    assert history and "2 attempts" in history.group(1)
    assert history.group(1).count("<li>") == 2 and "scripted failure" in history.group(1)
    again = await follow(console, await console.post(f"{tenant}/retry", data={"csrf_token": token}))
    assert flash_of(again) == ("error: Retry refused: the provisioning run is not running (it has finished)")
    cancel = await follow(console, await console.post(f"{tenant}/cancel", data={"csrf_token": token}))
    assert flash_of(cancel) == "error: Nothing to cancel: the tenant is online; Delete removes it."


async def test_delete_needs_the_tenants_name_typed(
    console: httpx.AsyncClient, deps: Deps, tenant_name: Callable[[], str],
) -> None:
    name = tenant_name()
    project = (await deps.store.create_project(name=name, kind=ProjectKind.PROJECT,
                                               steps=PROJECT_STEP_NAMES)).project
    await deps.store.set_project_status(project.id, ProjectStatus.ONLINE)
    token = await log_in(console)
    confirm = await console.get(f"/console/tenants/{name}/delete")
    assert confirm.status_code == 200 and f"Type <code>{name}</code> to confirm" in confirm.text
    for typed in ("", name + "x", name.upper()):
        refused = await console.post(f"/console/tenants/{project.id}/delete",
                                     data={"csrf_token": token, "confirm_name": typed})
        assert refused.status_code == 400
        assert "does not match" in refused.text
    assert await status_of(deps, name) == "online"
    assert (await console.get(f"/console/tenants/{uuid.uuid4()}/delete")).status_code == 404


async def test_the_pages_event_stream_is_the_apis_with_the_login_cookie(
    console: httpx.AsyncClient, deps: Deps, script: ScriptedSteps, tenant_name: Callable[[], str],
) -> None:
    token = await log_in(console)
    name = tenant_name()
    created = await console.post("/console/tenants", data={"name": name, "csrf_token": token})
    tenant = created.headers["location"]
    await eventually(lambda: has_status(deps, name, "online"), timeout=30)
    # Settled: the stream replays the history, ends, and closes.
    body = (await console.get(f"{tenant}/events")).text
    kinds = re.findall(r"^event: (\w+)$", body, re.M)
    assert kinds.count("step") >= 2 * len(PROJECT_STEP_NAMES)  # each step: running, then skipped
    assert kinds[-1] == "end" and '"status": "online"' in body.split("event: end")[1].replace('":"', '": "')
    ids = [int(i) for i in re.findall(r"^id: (\d+)$", body, re.M)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    resumed = (await console.get(f"{tenant}/events", headers={"Last-Event-ID": str(ids[-2])})).text
    assert re.findall(r"^id: (\d+)$", resumed, re.M) == [str(ids[-1])]
