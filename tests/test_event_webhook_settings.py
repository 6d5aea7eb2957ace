"""The completion-webhook settings: off by default, receivers read from a comma-separated variable,
each an http(s) URL, and a Standard Webhooks secret required with them (a real one in production)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from tenantflow.settings import Settings, to_env
from tenantflow.standard_webhooks import generate_secret
from tests.conftest import ROOT
from tests.test_settings_and_names import BASE

SECRET = generate_secret()


def test_off_by_default() -> None:
    settings = Settings(**BASE)
    assert settings.event_webhook_urls == []
    assert settings.event_webhook_secret.get_secret_value() == ""


def test_the_environment_gives_a_comma_separated_list_and_to_env_round_trips_it() -> None:
    env = {f"TENANTFLOW_{k.upper()}": v for k, v in BASE.items()} | {
        "TENANTFLOW_EVENT_WEBHOOK_URLS": " https://hooks.example.com/tf , http://10.0.0.7:8080/in,",
        "TENANTFLOW_EVENT_WEBHOOK_SECRET": SECRET,
    }
    probe = "from tenantflow.settings import Settings; print(Settings().event_webhook_urls)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "['https://hooks.example.com/tf', 'http://10.0.0.7:8080/in']"
    settings = Settings(**{**BASE, "event_webhook_urls": ["https://a.example/x", "https://b.example/y"],
                           "event_webhook_secret": SECRET})
    assert to_env(settings)["TENANTFLOW_EVENT_WEBHOOK_URLS"] == "https://a.example/x,https://b.example/y"


@pytest.mark.parametrize(("urls", "reason"), [
    ("ftp://files.example.com/x", "not an http"),
    ("hooks.example.com/tf", "not an http"),
    ("https:///no-host", "not an http"),
    ("https://user:pw@hooks.example.com/tf", "carries credentials"),
    ("https://a.example/x,https://a.example/x", "listed twice"),
])
def test_bad_receiver_urls_are_refused_with_the_reason(urls: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(**{**BASE, "event_webhook_urls": urls, "event_webhook_secret": SECRET})


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"event_webhook_urls": "https://a.example/x"}, "needs TENANTFLOW_EVENT_WEBHOOK_SECRET"),
    ({"event_webhook_secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "whsec_"),
    ({"event_webhook_secret": "whsec_%%%"}, "not base64"),
])
def test_the_secret_is_required_with_receivers_and_must_be_whsec_base64(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(**{**BASE, **overrides})


@pytest.mark.parametrize("secret", ["whsec_Y2hhbmdlbWU=", "whsec_" + "A" * 44])  # "changeme", 32 zero bytes
def test_production_refuses_a_short_or_placeholder_secret(secret: str) -> None:
    production = {**BASE, "environment": "production", "encryption_keys": "k1:" + "x" * 40}
    hooks = {"event_webhook_urls": "https://a.example/x"}
    with pytest.raises(ValidationError, match="event_webhook_secret must be a real secret"):
        Settings(**{**production, **hooks, "event_webhook_secret": secret})
    Settings(**{**BASE, **hooks, "event_webhook_secret": secret})  # dev takes it
    Settings(**{**production, **hooks, "event_webhook_secret": SECRET})
    Settings(**production)  # no receivers, no secret: production as before
