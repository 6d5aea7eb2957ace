"""Who gets into the console and which forms it obeys: the login (API token or console password,
no hint which was wrong), the session cookie's flags, expiry and key rotation, the CSRF token and
origin checks of every POST, and no secret in any page or URL."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError

from activities.deps import Deps
from api.console.auth import FAILED_LOGIN_DELAY, SESSION_COOKIE, new_session
from tenantflow.settings import Settings
from tests.conftest import API_TOKEN, ENCRYPTION_KEYS
from tests.console.conftest import console_client, csrf_of, log_in

CONSOLE_PASSWORD = "console-password-0123456789"
PAGES = ["/console", "/console/tenants/some-name", "/console/tenants/some-name/delete"]
LIVE_PARTS = ["/console/tenants/some-name/timeline", "/console/tenants/some-name/header",
              "/console/tenants/some-name/events"]


def set_cookie_headers(response: httpx.Response, name: str) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


# --------------------------------------------------------------------------------------- settings
def test_the_console_settings_refuse_a_weak_password_in_production_and_a_non_web_ui_link(
    make_settings: Callable[..., Settings],
) -> None:
    production = {"environment": "production", "api_token": "a-real-api-token-0123456789",
                  "encryption_keys": "k1:" + "x" * 40, "webhook_secret": "a-real-webhook-secret-123"}
    with pytest.raises(ValidationError, match="console_password"):
        make_settings(**production, console_password="password")
    assert make_settings(**production, console_password="").console_password.get_secret_value() == ""
    for url in ("javascript:alert(1)", "data:text/html,x", "127.0.0.1:8233"):
        with pytest.raises(ValidationError, match="temporal_ui_url"):
            make_settings(temporal_ui_url=url)
    # A trailing slash would double in the links.
    assert make_settings(temporal_ui_url="https://temporal.example/").temporal_ui_url == "https://temporal.example"


# ------------------------------------------------------------------------------------------ login
async def test_without_a_login_pages_redirect_to_it_and_live_parts_are_401(
    console: httpx.AsyncClient,
) -> None:
    for path in PAGES:
        response = await console.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/login"
    for path in LIVE_PARTS:
        assert (await console.get(path)).status_code == 401, path
    assert (await console.get("/")).headers["location"] == "/console"
    login = await console.get("/console/login")
    assert login.status_code == 200
    assert 'type="password"' in login.text and 'method="post"' in login.text


async def test_a_wrong_password_is_a_401_page_that_does_not_say_which_secret_was_wrong(
    console: httpx.AsyncClient,
) -> None:
    started = time.monotonic()
    response = await console.post("/console/login", data={"password": API_TOKEN + "x"})
    assert time.monotonic() - started >= FAILED_LOGIN_DELAY
    assert response.status_code == 401
    assert "neither the API token nor the console password" in response.text
    assert not set_cookie_headers(response, SESSION_COOKIE)
    assert (await console.post("/console/login", data={"password": ""})).status_code == 401
    assert (await console.get("/console")).status_code == 303  # still not logged in


async def test_the_session_cookie_is_httponly_samesite_strict_on_console_paths_only(
    settings: Settings,
) -> None:
    async with console_client(settings) as client:
        response = await client.post("/console/login", data={"password": API_TOKEN})
        assert response.status_code == 303 and response.headers["location"] == "/console"
        [cookie] = set_cookie_headers(response, SESSION_COOKIE)
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
        assert "secure" not in flags  # plain http here: a Secure cookie would never come back
        assert API_TOKEN not in cookie
        assert (await client.get("/console")).status_code == 200
    async with console_client(settings, base_url="https://console") as client:
        response = await client.post("/console/login", data={"password": API_TOKEN})
        [cookie] = set_cookie_headers(response, SESSION_COOKIE)
        assert "secure" in [part.strip().lower() for part in cookie.split(";")]


async def test_the_console_password_logs_in_as_well_as_the_api_token(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(console_password=CONSOLE_PASSWORD)
    for password in (CONSOLE_PASSWORD, API_TOKEN):
        async with console_client(settings) as client:
            assert (await client.post("/console/login", data={"password": password})).status_code == 303
            assert (await client.get("/console")).status_code == 200
    async with console_client(settings) as client:
        almost = await client.post("/console/login", data={"password": CONSOLE_PASSWORD[:-1]})
        assert almost.status_code == 401


async def test_expired_forged_and_pre_rotation_sessions_are_sent_to_the_login(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    expired, _ = new_session(settings, now=time.time() - settings.console_session_hours * 3600 - 1)
    valid, _ = new_session(settings)
    payload, _, mac = valid.partition(".")
    forged = f"{payload}.{mac[:-2]}AA"
    rotated = make_settings(task_queue=settings.task_queue, api_token=API_TOKEN + "-rotated")
    async with console_client(settings) as client:
        client.cookies.set(SESSION_COOKIE, valid, path="/console")
        assert (await client.get("/console")).status_code == 200
        for bad in (expired, forged, "garbage", ""):
            client.cookies.set(SESSION_COOKIE, bad, path="/console")
            assert (await client.get("/console")).status_code == 303, bad
    async with console_client(rotated) as client:  # the same cookie after the token was rotated
        client.cookies.set(SESSION_COOKIE, valid, path="/console")
        assert (await client.get("/console")).headers["location"] == "/console/login"


async def test_logout_deletes_the_cookie_and_needs_the_csrf_token(console: httpx.AsyncClient) -> None:
    token = await log_in(console)
    assert (await console.post("/console/logout")).status_code == 403
    response = await console.post("/console/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    [cookie] = set_cookie_headers(response, SESSION_COOKIE)
    assert "max-age=0" in cookie.lower()
    assert (await console.get("/console")).status_code == 303
    assert "Logged out." in (await console.get("/console/login")).text


# ------------------------------------------------------------------------------------------- CSRF
@pytest.mark.parametrize(
    ("data", "headers"),
    [
        ({}, {}),
        ({"csrf_token": "wrong"}, {}),
        ({"csrf_token": "OTHER"}, {}),  # replaced by another session's real token
        ({"csrf_token": "MINE"}, {"Origin": "https://evil.example"}),
        ({"csrf_token": "MINE"}, {"Origin": "null"}),
        ({"csrf_token": "MINE"}, {"Sec-Fetch-Site": "cross-site"}),
    ],
    ids=["no-token", "wrong-token", "other-sessions-token", "foreign-origin", "null-origin", "cross-site"],
)
async def test_a_post_without_this_sessions_token_or_from_another_origin_is_refused(
    settings: Settings, deps: Deps, tenant_name: Callable[[], str], data: dict[str, str],
    headers: dict[str, str],
) -> None:
    name = tenant_name()
    async with console_client(settings) as other:
        other_token = await log_in(other)
    async with console_client(settings) as client:
        mine = await log_in(client)
        tokens = {"MINE": mine, "OTHER": other_token}
        form = {"name": name, **{k: tokens.get(v, v) for k, v in data.items()}}
        response = await client.post("/console/tenants", data=form, headers=headers)
        assert response.status_code == 403
        assert "refused" in response.text
        assert await deps.store.get_project_by_ref(name) is None
        # The same form from this console, with its token: accepted.
        accepted = await client.post("/console/tenants", data={"name": name, "csrf_token": mine},
                                     headers={"Origin": "http://console", "Sec-Fetch-Site": "same-origin"})
        assert accepted.status_code == 303, accepted.text
        assert await deps.store.get_project_by_ref(name) is not None


async def test_a_login_posted_from_another_origin_is_refused(console: httpx.AsyncClient) -> None:
    response = await console.post("/console/login", data={"password": API_TOKEN},
                                  headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert not set_cookie_headers(response, SESSION_COOKIE)


# ---------------------------------------------------------------------------------------- secrets
async def test_no_secret_in_any_page_header_or_url(
    make_settings: Callable[..., Settings], tenant_name: Callable[[], str],
) -> None:
    settings = make_settings(console_password=CONSOLE_PASSWORD)
    secrets = [API_TOKEN, CONSOLE_PASSWORD, ENCRYPTION_KEYS.split(":", 1)[1],
               settings.database_url.get_secret_value(), settings.webhook_secret.get_secret_value()]
    name = tenant_name()
    seen: list[httpx.Response] = []
    async with console_client(settings) as client:
        client.event_hooks["response"] = [functools.partial(_keep, seen)]
        await client.get("/console/login")
        token = await log_in(client, CONSOLE_PASSWORD)
        created = await client.post("/console/tenants", data={"name": name, "csrf_token": token})
        tenant = created.headers["location"]
        for path in ("/console", f"/console?name={name}", tenant, f"{tenant}/delete", f"{tenant}/timeline",
                     f"{tenant}/header", "/console/static/console.js", "/console/static/console.css"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
    assert len(seen) > 10
    for response in seen:
        await response.aread()
        everything = f"{response.request.url}\n{response.headers}\n{response.text}"
        for secret in secrets:
            assert secret not in everything, (response.request.url, secret[:4])


async def _keep(seen: list[httpx.Response], response: httpx.Response) -> None:
    seen.append(response)


async def test_pages_are_not_cached_framed_or_given_foreign_scripts(console: httpx.AsyncClient) -> None:
    await log_in(console)
    response = await console.get("/console")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # Every asset the page loads is the app's own (works offline, nothing from a CDN).
    urls = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert "/console/static/console.css" in urls and "/console/static/console.js" in urls
    assert all(url.startswith("/") or url == "data:," for url in urls), urls


async def test_an_unknown_tenant_is_a_404_page(console: httpx.AsyncClient) -> None:
    await log_in(console)
    for path in ("/console/tenants/no-such-tenant", "/console/tenants/no-such-tenant/timeline",
                 "/console/tenants/00000000-0000-0000-0000-000000000000"):
        response = await console.get(path)
        assert response.status_code == 404, path
        assert "No tenant has the id or name" in response.text
    token = csrf_of((await console.get("/console")).text)
    assert (await console.post("/console/tenants/no-such-tenant/retry",
                               data={"csrf_token": token})).status_code == 404
