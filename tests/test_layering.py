"""The layers import downwards only: the API learns step and workflow names from the shared
vocabulary (tenantflow.catalog), never by loading workflow or activity code."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_the_api_loads_no_workflow_or_activity_module() -> None:
    probe = (
        "import json, sys, api.main; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('activities', 'workflows'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == []


def test_every_step_activity_is_registered_under_its_catalog_name() -> None:
    from temporalio.activity import _Definition

    from tenantflow.catalog import StepName
    from workflows.steps import STEP_SPECS

    assert set(STEP_SPECS) == set(StepName)
    for name, spec in STEP_SPECS.items():
        definition = _Definition.from_callable(spec.activity)
        assert definition is not None and definition.name == name


def test_the_cli_is_a_plain_http_client_of_the_api() -> None:
    """``tenantflow`` loads the shared vocabulary and nothing else of the project: no API, store,
    workflow or activity code, no Temporal, database or ORM library (it runs wherever the API is
    reachable, and starts fast)."""
    probe = (
        "import json, sys, cli.main; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('api', 'activities', 'workflows', 'worker', 'tenantflow', 'temporalio', 'sqlalchemy', 'sqlmodel', "
        "'psycopg', 'neo4j'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == ["tenantflow", "tenantflow.catalog"]
