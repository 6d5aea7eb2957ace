"""docker-compose.temporal.yml against the code: no Docker engine here, so its structure is checked.

The worker, the API and the migration job must be configured only with ``TENANTFLOW_*`` names that
are ``Settings`` fields, must get every required setting, must take secrets from interpolation
(never literals), and every ``${VAR:?}`` it demands must be documented in deploy.env.example.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenantflow.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.temporal.yml"
APP_SERVICES = ("worker", "api", "migrate")
PREFIX = Settings.model_config.get("env_prefix", "")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|KEY|AUTH", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment``, whether written as a mapping or as a ``KEY=VALUE`` list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def env_name(field: str) -> str:
    return f"{PREFIX}{field}".upper()


def interpolate(value: str) -> str:
    """What compose would substitute, with a long placeholder for each variable without a default."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.groups()
        if op in (":-", "-"):
            return arg
        return f"placeholder-{name.lower()}-0123456789"

    return INTERPOLATION.sub(sub, value)


def test_compose_file_has_the_deployment_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "temporal", "temporal-ui", "neo4j", *APP_SERVICES):
        assert name in services, f"service {name} missing"
    assert services["worker"]["command"] == ["python", "worker.py"]
    assert "api.main:app" in services["api"]["command"]
    for name in APP_SERVICES:
        assert services[name]["build"] == ".", f"{name} must be built from this repository"


def test_depends_on_names_existing_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on") or []:
            assert dependency in services, f"{name} depends on unknown service {dependency}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_tenantflow_variable_is_a_settings_field(compose: dict[str, Any], service: str) -> None:
    known = {env_name(field) for field in Settings.model_fields}
    env = environment(compose["services"][service])
    unknown = sorted(k for k in env if k.upper().startswith(PREFIX) and k.upper() not in known)
    assert not unknown, f"{service} sets variables Settings does not read: {unknown}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_required_setting_is_provided(compose: dict[str, Any], service: str) -> None:
    env = environment(compose["services"][service])
    required = [name for name, field in Settings.model_fields.items() if field.is_required()]
    assert required, "Settings has required fields (database_url, api_token, ...)"
    missing = [env_name(name) for name in required if not env.get(env_name(name))]
    assert not missing, f"{service} lacks required settings: {missing}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_settings_validate_as_production(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With placeholders for the secrets, the environment passes Settings' own validators."""
    import os

    for key in list(os.environ):
        if key.upper().startswith(PREFIX):
            monkeypatch.delenv(key)
    for key, value in environment(compose["services"][service]).items():
        monkeypatch.setenv(key, interpolate(value))
    settings = Settings()  # type: ignore[call-arg]
    assert settings.environment.value == "production"
    assert settings.temporal_address == "temporal:7233"


def test_secrets_come_from_interpolation_not_literals(compose: dict[str, Any]) -> None:
    secret_fields = {env_name(n) for n, f in Settings.model_fields.items() if "Secret" in str(f.annotation)}
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if (key in secret_fields or SECRET_NAME.search(key)) and value:
                assert INTERPOLATION.search(value), f"{name}: {key} has a literal value; use ${{VAR:?}}"


def strings(node: Any) -> list[str]:
    """Every string value in the parsed compose document (comments are not values)."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def test_required_variables_are_documented_in_the_env_example(compose: dict[str, Any]) -> None:
    demanded = {m.group(1) for value in strings(compose) for m in INTERPOLATION.finditer(value)
                if m.group(2) in (":?", "?")}
    assert "POSTGRES_PASSWORD" in demanded
    example = (ROOT / "deploy.env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    assert demanded - documented == set(), "add these to deploy.env.example"


def test_dockerfile_copies_every_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    wanted = [p.rstrip("*") for p in project["packages"]["find"]["include"]]
    wanted += [f"{m}.py" for m in project.get("py-modules", [])]
    copied = " ".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                      if line.startswith("COPY"))
    missing = [p for p in wanted if not re.search(rf"(^|\s){re.escape(p)}(\s|$)", copied)]
    assert not missing, f"the Dockerfile does not copy {missing}"


def test_the_setup_job_creates_every_search_attribute_the_workflows_use(compose: dict[str, Any]) -> None:
    from tenantflow.search_attributes import ALL

    script = "\n".join(compose["services"]["temporal-setup"]["command"])
    for key in ALL:
        assert re.search(rf"\b{key.name}\b", script), f"{key.name} is not created by temporal-setup"
