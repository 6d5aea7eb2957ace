"""The API's documentation works offline: /docs and /redoc render in a real browser from assets
the app serves itself, and the OpenAPI spec documents the errors every route shares."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from api.main import create_app
from standins.server import ThreadedServer
from tenantflow.settings import Settings
from tests.browser import chromium, screenshot


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with ThreadedServer(create_app(settings)) as served:
        yield served.url


def test_the_spec_documents_401_on_protected_routes_and_400_on_bodies(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json").json()
    operations = {(path, method): op for path, ops in spec["paths"].items() for method, op in ops.items()}
    protected = {key for key, op in operations.items() if "401" in op["responses"]}
    open_ = set(operations) - protected
    assert ("/v1/projects", "post") in protected and ("/v1/projects/{ref}/events", "get") in protected
    # Only the health checks answer without credentials (the signup webhook has its own 401: a
    # signature instead of the token).
    assert {path for path, _ in open_} == {"/healthz", "/v1/webhooks/auth/health"}
    with_body = {key for key, op in operations.items() if "requestBody" in op}
    assert with_body and all("400" in operations[key]["responses"] for key in with_body)
    assert all("400" not in op["responses"] for key, op in operations.items() if key not in with_body)
    # And the API does answer so.
    anon = httpx.post(f"{server}/v1/projects", json={"name": "abc"})
    assert anon.status_code == 401
    bad = httpx.post(f"{server}/v1/projects", content=b"{not json",
                     headers={"Authorization": "Bearer test-api-token-0123456789",
                              "Content-Type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["detail"]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_only_assets_of_the_app(server: str, page: str) -> None:
    html = httpx.get(server + page).text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls and all(u.startswith("/") for u in urls), urls
    for url in urls:
        assert httpx.get(server + url).status_code == 200, url


def test_the_docs_render_in_a_browser_without_internet(server: str) -> None:
    with chromium() as browser:
        browser.get(f"{server}/docs")
        WebDriverWait(browser, 20).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) > 5)
        titles = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert "/v1/projects/{ref}/events" in titles
        screenshot(browser, "docs/swagger")

        browser.get(f"{server}/redoc")
        WebDriverWait(browser, 20).until(
            lambda b: "/v1/projects/{ref}/events" in b.find_element(By.TAG_NAME, "body").text
        )
        screenshot(browser, "docs/redoc")
