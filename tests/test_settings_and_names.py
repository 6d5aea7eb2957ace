"""Settings refuse what would be unsafe or incomplete; names are validated before any SQL/Cypher."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tenantflow.errors import InvalidName
from tenantflow.names import graph_db_name, tenant_db_name, tenant_role_name, validate_project_name
from tenantflow.settings import Settings

BASE: dict[str, Any] = dict(database_url="postgresql://u:p@h/db", tenant_pg_admin_url="postgresql://u:p@h/p",
                            api_token="a-real-token-0123456789", encryption_keys="k1:x",
                            webhook_secret="a-real-webhook-secret-123")


def test_production_refuses_placeholder_secrets() -> None:
    with pytest.raises(ValidationError, match="api_token"):
        Settings(**{**BASE, "environment": "production", "api_token": "changeme"})
    Settings(**{**BASE, "environment": "production", "encryption_keys": "k1:" + "x" * 40})


def test_required_settings_have_no_default() -> None:
    with pytest.raises(ValidationError):
        Settings()  # type: ignore[call-arg]


@pytest.mark.parametrize("backend,missing", [("neo4j", "NEO4J_URI"), ("arcadedb", "ARCADEDB"),
                                             ("aura", "AURA_CLIENT_ID")])
def test_a_graph_backend_needs_its_settings(backend: str, missing: str) -> None:
    with pytest.raises(ValidationError, match=missing):
        Settings(**{**BASE, "graph_backend": backend})


@pytest.mark.parametrize("name", ["acme", "acme-prod-2", "a1b"])
def test_good_names_map_to_safe_identifiers(name: str) -> None:
    assert validate_project_name(name) == name
    assert tenant_db_name(name).startswith("t_") and "-" not in tenant_db_name(name)
    assert tenant_role_name(name).endswith("_owner")
    assert graph_db_name(name) == f"tf-{name}"


@pytest.mark.parametrize("name", ["", "ab", "Acme", "1abc", "acme-", "ac--me", "a" * 41, "acme prod",
                                  'x"; drop database postgres; --', "acme_prod", "postgres", "system-x",
                                  "pg-foo", "ünï"])
def test_bad_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidName) as err:
        validate_project_name(name)
    assert "invalid project name" in err.value.message
