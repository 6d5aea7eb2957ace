"""The console in a real browser (Debian's Chromium, headless, through Selenium), against the app
served by uvicorn, the real worker, Temporal, Postgres, ArcadeDB and the platform stand-ins.

An operator logs in (after a wrong password), creates a tenant and watches its steps turn green
while the page stays loaded (Server-Sent Events, no reload), sees a step that a stand-in fault made
fail with its error, presses Retry and sees the run finish, deletes a tenant through the typed
confirmation and sees its teardown steps, and logs out. Every page is saved under
``test-artifacts/console/``; a missing browser fails the test (``tests.browser``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from api.main import create_app
from standins.server import ThreadedServer
from tenantflow.catalog import PROJECT_STEP_NAMES, PROJECT_TEARDOWN_STEP_NAMES
from tenantflow.settings import Settings
from tests.browser import chromium, screenshot
from tests.conftest import API_TOKEN
from tests.e2e.conftest import fault

WAIT = 90  # seconds: a whole provisioning on two busy cores, with margin
Fault = Callable[..., None]


@pytest.fixture(scope="module")
def browser() -> Iterator[Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def faults(platform: str) -> Iterator[Fault]:
    """``faults(service=..., kind=...)`` arms a stand-in fault; all are disarmed afterwards."""
    yield functools.partial(fault, platform)
    httpx.delete(f"{platform}/_faults").raise_for_status()


@pytest.fixture
def console(full_settings: Callable[..., Settings]) -> Iterator[tuple[Settings, str]]:
    """Settings for the worker and the console's URL, the app served on a free port."""
    # A short heartbeat timeout: a cancelled step hears of it within seconds.
    settings = full_settings(step_heartbeat_timeout_seconds=3)
    with ThreadedServer(create_app(settings)) as server:
        yield settings, f"{server.url}/console"


# ---------------------------------------------------------------------------------------- helpers
def wait(browser: Chrome, condition: Callable[[Chrome], Any], what: str, timeout: float = WAIT) -> Any:
    """``condition``'s first truthy value; on a timeout the page is saved as ``timeout.png``."""
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.1).until(condition, message=what)
    except TimeoutException:
        with contextlib.suppress(WebDriverException):
            shot(browser, "timeout")
        raise


def steps(browser: Chrome, run: str = "provision") -> dict[str, str]:
    """Step name → the status its badge row shows (read in one go: the timeline is swapped live)."""
    pairs = browser.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]))"
        ".map(r => [r.dataset.step, r.dataset.status]);",
        f'[data-run="{run}"] tr[data-step]',
    )
    return dict(pairs)


def header_status(browser: Chrome) -> str:
    return str(browser.execute_script(
        "const b = document.querySelector('#tenant-header h1 .badge'); return b ? b.textContent : '';"
    ))


def flash(browser: Chrome) -> str:
    found = browser.find_elements(By.CSS_SELECTOR, ".flash")
    return found[0].text if found else ""


def wait_flash(browser: Chrome, text: str) -> None:
    """Wait for the page a click led to, by its message (a click may return before it loads)."""
    wait(browser, lambda b: text in flash(b), f"a message saying {text!r}", timeout=30)


def press(browser: Chrome, button_id: str) -> None:
    """Click a header button. Found and clicked in one step, since a live page may swap the header
    between a lookup and a click; from a timer, so a confirm() it opens does not block the call."""
    browser.execute_script("setTimeout(() => document.getElementById(arguments[0]).click(), 0);", button_id)


def mark_page(browser: Chrome) -> None:
    """A variable that only survives as long as this very page does (a reload drops it)."""
    browser.execute_script("window.__sameConsolePage = true;")


def same_page(browser: Chrome) -> bool:
    return bool(browser.execute_script("return window.__sameConsolePage === true;"))


def live_shown(browser: Chrome) -> bool:
    return bool(browser.execute_script("const l = document.getElementById('live'); return !!l && !l.hidden;"))


def watch_until(browser: Chrome, done: Callable[[Chrome], bool], what: str) -> list[dict[str, str]]:
    """Wait for ``done``, noting each different timeline seen on the way."""
    seen: list[dict[str, str]] = []

    def check(b: Chrome) -> bool:
        now = {**steps(b), **{f"teardown:{k}": v for k, v in steps(b, "deprovision").items()}}
        if not seen or seen[-1] != now:
            seen.append(now)
        return done(b)

    wait(browser, check, what)
    return seen


def log_in(browser: Chrome, url: str, password: str = API_TOKEN) -> None:
    browser.get(f"{url}/login")
    field = browser.find_element(By.ID, "password")
    field.send_keys(password)
    field.submit()
    wait(browser, lambda b: b.current_url == url or b.find_elements(By.CSS_SELECTOR, ".flash-error"),
         "the login's answer", timeout=30)


def create(browser: Chrome, url: str, name: str) -> None:
    browser.get(url)
    browser.find_element(By.ID, "new-name").send_keys(name)
    browser.find_element(By.CSS_SELECTOR, "form.create button").click()
    wait(browser, lambda b: b.find_elements(By.ID, "tenant"), f"the page of {name}")


def all_done(names: tuple[str, ...], run: str = "provision") -> Callable[[Chrome], bool]:
    return lambda b: [steps(b, run).get(n) for n in names] == ["success"] * len(names)


def online(b: Chrome) -> bool:
    return header_status(b) == "online" and all_done(PROJECT_STEP_NAMES)(b) and not live_shown(b)


def shot(browser: Chrome, name: str) -> None:
    """The whole page, no more (the window fitted to it) as ``test-artifacts/console/<name>.png``."""
    size = browser.get_window_size()
    bottom, chrome = browser.execute_script(
        "return [Math.ceil(document.querySelector('main').getBoundingClientRect().bottom + window.scrollY),"
        " window.outerHeight - window.innerHeight];"
    )
    browser.set_window_size(size["width"], int(bottom) + int(chrome))
    try:
        screenshot(browser, f"console/{name}")
    finally:
        browser.set_window_size(size["width"], size["height"])


async def with_worker(run_worker: Any, settings: Settings, flow: Callable[[], None]) -> None:
    """Run the (blocking) browser flow in a thread while the real worker runs on the event loop."""
    async with run_worker(settings):
        await asyncio.to_thread(flow)


# ------------------------------------------------------------------------------------------ tests
async def test_log_in_create_a_tenant_and_watch_its_steps_turn_green_live_then_log_out(
    browser: Chrome, console: tuple[Settings, str], run_worker: Any, faults: Fault,
) -> None:
    settings, url = console
    name = f"acme-{uuid.uuid4().hex[:6]}"

    def flow() -> None:
        browser.delete_all_cookies()
        browser.get(url)
        assert browser.current_url == f"{url}/login"  # not logged in: the login page
        log_in(browser, url, "not-the-token")
        assert "neither the API token nor the console password" in browser.page_source
        assert API_TOKEN not in browser.page_source and "not-the-token" not in browser.current_url
        shot(browser, "login-refused")
        log_in(browser, url)
        assert browser.current_url == url
        assert browser.find_element(By.CSS_SELECTOR, ".counts").text

        faults(service="storage", kind="slow", delay_seconds=2.5, count=1)  # a run long enough to watch
        create(browser, url, name)
        mark_page(browser)
        wait_flash(browser, f"Created {name}")
        assert live_shown(browser), "the page of a tenant in flight listens for events"
        assert steps(browser).get("verify_services") != "success"
        wait(browser, lambda b: "success" in steps(b).values(), "a first step done")
        shot(browser, "tenant-in-flight")
        seen = watch_until(browser, online, f"{name} online, every step green")
        assert same_page(browser), "the page was reloaded: the steps did not arrive live"
        assert len(seen) >= 3, seen  # the timeline changed step by step, in place
        assert not browser.find_elements(By.CSS_SELECTOR, '[data-run="deprovision"]')
        assert browser.find_elements(By.ID, "delete") and not browser.find_elements(By.ID, "retry")
        runs = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".facts a")]
        assert runs == [f"{settings.temporal_ui_url}/namespaces/default/workflows/"
                        + browser.find_element(By.CSS_SELECTOR, ".facts a code").text]
        shot(browser, "tenant-online")

        browser.get(f"{url}?name={name}")
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-tenant="{name}"]')
        assert "online" in row.text and " s" in row.text  # status, age and time to online
        browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
        wait_flash(browser, "Logged out.")
        assert browser.current_url == f"{url}/login"
        browser.get(url)
        assert browser.current_url == f"{url}/login"

    await with_worker(run_worker, settings, flow)


async def test_a_failed_step_shows_its_error_and_retry_finishes_the_run(
    browser: Chrome, console: tuple[Settings, str], run_worker: Any, faults: Fault, platform: str,
) -> None:
    settings, url = console
    suffix = uuid.uuid4().hex[:6]
    name, waiting = f"globex-{suffix}", f"initech-{suffix}"

    def flow() -> None:
        browser.delete_all_cookies()
        log_in(browser, url)
        faults(service="storage", kind="status", status=400, count=0, message="bucket quota exceeded")
        create(browser, url, name)
        mark_page(browser)
        wait(browser, lambda b: steps(b).get("register_storage_service") == "failed", "storage failed")
        wait(browser, lambda b: header_status(b) == "failed" and not live_shown(b), "the tenant failed")
        assert same_page(browser)
        failed_row = browser.find_element(By.CSS_SELECTOR, 'tr[data-step="register_storage_service"]')
        assert "quota exceeded" in failed_row.text and "failed" in failed_row.text
        failed_row.find_element(By.XPATH, ".//summary[text()='error details']").click()
        assert '"retry_state": "NON_RETRYABLE_FAILURE"' in failed_row.text
        assert steps(browser)["verify_services"] == "pending"
        shot(browser, "tenant-failed")

        create(browser, url, waiting)  # a second one left waiting, for the list
        wait(browser, lambda b: header_status(b) == "failed", f"{waiting} failed")

        browser.get(f"{url}/tenants/{name}")
        httpx.delete(f"{platform}/_faults").raise_for_status()  # the quota is raised
        faults(service="storage", kind="slow", delay_seconds=2, count=1)  # slow enough to watch
        press(browser, "retry")
        wait_flash(browser, "Retrying register_storage_service")
        mark_page(browser)
        assert live_shown(browser), "after Retry the page listens again"
        watch_until(browser, online, f"{name} online after the retry")
        assert same_page(browser)
        storage = browser.find_element(By.CSS_SELECTOR, 'tr[data-step="register_storage_service"]')
        assert "2 attempts" in storage.text  # the failed one and the retry: both listed
        storage.find_element(By.CSS_SELECTOR, "details.attempts summary").click()
        history = storage.find_element(By.CSS_SELECTOR, "details.attempts ol").text
        assert "failed" in history and "quota exceeded" in history and "success" in history
        shot(browser, "tenant-retried")

        browser.get(url)
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-tenant="{waiting}"]')
        assert "failed" in row.text and "register_storage_service" in row.text and "quota" in row.text
        shot(browser, "list-waiting")

    await with_worker(run_worker, settings, flow)


async def test_delete_asks_for_the_name_and_cancel_for_a_confirmation_then_the_teardown_runs_live(
    browser: Chrome, console: tuple[Settings, str], run_worker: Any, faults: Fault, platform: str,
) -> None:
    settings, url = console
    suffix = uuid.uuid4().hex[:6]
    name, waiting, busy = f"hooli-{suffix}", f"umbrella-{suffix}", f"soylent-{suffix}"

    def flow() -> None:
        browser.delete_all_cookies()
        log_in(browser, url)
        create(browser, url, name)
        wait(browser, online, f"{name} online")
        press(browser, "delete")
        wait(browser, lambda b: b.current_url.endswith("/delete"), "the confirmation page", timeout=30)
        browser.find_element(By.ID, "confirm-name").send_keys(name + "-typo")
        browser.find_element(By.ID, "confirm-delete").click()
        wait_flash(browser, "does not match")
        shot(browser, "delete-confirm")
        browser.get(f"{url}?name={name}")
        assert browser.find_element(By.CSS_SELECTOR, f'tr[data-tenant="{name}"] .badge').text == "online"

        browser.get(f"{url}/tenants/{name}/delete")
        faults(service="storage", kind="slow", delay_seconds=2, count=1)  # a teardown long enough to watch
        browser.find_element(By.ID, "confirm-name").send_keys(name)
        browser.find_element(By.ID, "confirm-delete").click()
        wait_flash(browser, f"Deleting {name}")
        mark_page(browser)
        assert header_status(browser) == "deprovisioning" and live_shown(browser)
        watch_until(browser, lambda b: header_status(b) == "deleted" and not live_shown(b)
                    and all_done(PROJECT_TEARDOWN_STEP_NAMES, "deprovision")(b), f"{name} deleted")
        assert same_page(browser)
        assert not browser.find_elements(By.ID, "delete") and not browser.find_elements(By.ID, "retry")
        titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".run h3")]
        assert [t.split()[0] for t in titles] == ["Provisioning", "Deprovisioning"]
        assert len(browser.find_elements(By.CSS_SELECTOR, ".facts a")) == 2  # both runs in Temporal
        shot(browser, "tenant-deleted")

        # A tenant failed and waiting, and one in flight (its storage step hangs), for the list.
        faults(service="storage", kind="status", status=400, count=0, message="bucket quota exceeded")
        create(browser, url, waiting)
        wait(browser, lambda b: header_status(b) == "failed" and not live_shown(b), f"{waiting} failed")
        httpx.delete(f"{platform}/_faults").raise_for_status()
        faults(service="storage", kind="slow", delay_seconds=20, count=1)
        create(browser, url, busy)
        wait(browser, lambda b: steps(b).get("register_storage_service") == "running", "storage hangs")
        browser.get(url)
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-tenant="{busy}"]')
        assert "provisioning" in row.text and "register_storage_service" in row.text and "running" in row.text
        shot(browser, "list")

        # Cancel the failed one: a native confirm() first.
        browser.get(f"{url}/tenants/{waiting}")
        press(browser, "cancel")
        dialog = wait(browser, expected_conditions.alert_is_present(), "the confirmation", timeout=10)
        assert f"Cancel the provisioning of {waiting}?" in dialog.text
        dialog.dismiss()  # changed their mind: nothing happens
        assert header_status(browser) == "failed" and not flash(browser)
        press(browser, "cancel")
        wait(browser, expected_conditions.alert_is_present(), "the confirmation", timeout=10).accept()
        wait_flash(browser, "Cancelled")
        wait(browser, lambda b: header_status(b) == "deleted" and not live_shown(b), f"{waiting} deleted")
        assert all_done(PROJECT_TEARDOWN_STEP_NAMES, "deprovision")(browser)
        # Its failed step stays as it was, the history of why it never came online.
        assert steps(browser)["register_storage_service"] == "failed"
        shot(browser, "tenant-cancelled")

        browser.get(f"{url}/tenants/{busy}")  # the hung step ends; its run finishes
        wait(browser, online, f"{busy} online")

    await with_worker(run_worker, settings, flow)

