"""``python -m devstack`` end to end: the real stack as a user starts it, on free ports.

Starts the stack, provisions a project through the API with the printed token until it is
``online``, and one with ``tenantflow create NAME --wait`` (in a pseudo-terminal, with the printed
export line), kills the worker and provisions another (the stack restarts it), checks the Temporal
Web UI answers, stops the stack with SIGTERM and checks nothing it started survives; then starts
it again on the same state directory and finds the project there.

Runs by default (CI included); ``SKIP_DEVSTACK_TEST=1`` is the only way to skip it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.ports import free_port
from devstack.stack import Ports
from tenantflow.catalog import PROJECT_STEP_NAMES
from tests.cli.terminal import cli_env, done_lines, in_terminal, piped

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(os.environ.get("SKIP_DEVSTACK_TEST") == "1", reason="SKIP_DEVSTACK_TEST=1"),
    pytest.mark.timeout(240),
]


@dataclasses.dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    output: Path
    ports: Ports

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_private(stack: Launched, state: Path) -> None:
    """No secret on any command line of the stack (``ps`` shows them to every user); the state
    directory, its logs and secrets readable by us alone (others may only pass through the state
    directories, where Postgres runs as another user when we are root)."""
    secrets = [v for v in json.loads((state / "secrets.json").read_text()).values() if len(str(v)) >= 8]
    for pid in _descendants(stack.proc.pid) | {stack.proc.pid}:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            leaked = [name for name, v in json.loads((state / "secrets.json").read_text()).items()
                      if str(v) in cmdline]
            assert not leaked, f"{leaked} on the command line of {cmdline[:80]!r}"
    assert secrets, "secrets.json holds the stack's secrets"
    assert state.stat().st_mode & 0o076 == 0, oct(state.stat().st_mode)
    for path in [state / "secrets.json", *(state / "logs").iterdir()]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"
    assert (state / "logs").stat().st_mode & 0o076 == 0  # Postgres (as its user) writes its log there


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (by parent pid), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _stack_pids(launched: Launched, state: Path) -> set[int]:
    """The launcher's descendants plus what it recorded (Postgres daemonizes away from it)."""
    recorded = json.loads((state / "children.json").read_text())
    return _descendants(launched.proc.pid) | {child["pid"] for child in recorded}


@contextlib.contextmanager
def devstack(state: Path, ports: Ports, output: Path) -> Iterator[Launched]:
    """Run ``python -m devstack`` until the block ends; SIGTERM it (then SIGKILL) if still running."""
    flags = [arg for f in dataclasses.fields(Ports)
             for arg in (Ports.flag(f.name), str(getattr(ports, f.name)))]
    with open(output, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "devstack", "--state-dir", str(state), *flags],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    launched = Launched(proc, output, ports)
    try:
        yield launched
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_up(launched: Launched, *, timeout: float = 120.0) -> str:
    """Wait for the banner and a 200 from /healthz; return the printed API token."""
    deadline = time.monotonic() + timeout
    while True:
        assert launched.proc.poll() is None, f"devstack exited early:\n{launched.text()}"
        token = re.search(r"^API token: (\S+)$", launched.text(), re.MULTILINE)
        if token:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{launched.api}/healthz", timeout=5).status_code == 200:
                    return token.group(1)
        assert time.monotonic() < deadline, f"devstack not up after {timeout}s:\n{launched.text()}"
        time.sleep(0.3)


def cli_exports(launched: Launched) -> tuple[str, str]:
    """The API URL and token from the export line the stack prints for the CLI."""
    export = r"^  export TENANTFLOW_API_URL=(\S+) TENANTFLOW_API_TOKEN=(\S+)$"
    line = re.search(export, launched.text(), re.MULTILINE)
    assert line, f"no export line for the CLI:\n{launched.text()}"
    assert line.group(1) == launched.api
    return line.group(1), line.group(2)


def stop_and_check_all_gone(launched: Launched, state: Path) -> None:
    pids = _stack_pids(launched, state)
    assert len(pids) >= 6, f"expected every server and child to be running, found {pids}"
    launched.proc.send_signal(signal.SIGTERM)
    assert launched.proc.wait(60) == 0, launched.text()
    deadline = time.monotonic() + 10
    while (alive := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"still running after the stack stopped: {alive}\n{launched.text()}"


def recorded(state: Path, name: str) -> int:
    """The pid the stack recorded for its child ``name``."""
    children = json.loads((state / "children.json").read_text())
    return next(child["pid"] for child in children if child["name"] == name)


def create_project(client: httpx.Client, name: str) -> str:
    created = client.post("/v1/projects", json={"name": name})
    assert created.status_code in (201, 202), created.text
    return str(created.json()["id"])


def wait_online(client: httpx.Client, project_id: str, *, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        project = client.get(f"/v1/projects/{project_id}").raise_for_status().json()
        assert project["status"] != "failed", json.dumps(project, indent=1)
        if project["status"] == "online":
            return project
        assert time.monotonic() < deadline, f"not online after {timeout}s: {json.dumps(project, indent=1)}"
        time.sleep(0.3)


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A Prometheus page's samples by name and sorted labels (the parser rejects a malformed page)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_devstack_provisions_a_project_stops_cleanly_and_keeps_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ports = Ports(**{f.name: free_port() for f in dataclasses.fields(Ports)})
    name = "ds" + uuid.uuid4().hex[:10]

    with devstack(state, ports, tmp_path / "first.out") as first:
        token = wait_until_up(first)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=first.api, headers=headers, timeout=10) as client:
            project_id = create_project(client, name)
            project = wait_online(client, project_id)
            steps = {s["name"]: s["status"] for s in project["steps"]}
            assert list(steps) == list(PROJECT_STEP_NAMES)
            assert set(steps.values()) <= {"success", "skipped"}, steps

            # The tenantflow CLI, with the export line the stack printed, as a person runs it.
            env = cli_env(*cli_exports(first))
            created = in_terminal(["create", name + "c", "--wait"], env=env)
            assert created.exit_code == 0, created
            assert list(done_lines(created.screen, PROJECT_STEP_NAMES)) == list(PROJECT_STEP_NAMES), created
            assert created.screen.splitlines()[-1].startswith(f"✔ {name}c is online"), created
            details = piped(["connection", name + "c"], env=env)
            assert details.exit_code == 0, details
            url = rf"^postgres\s+url\s+postgresql://t_{name}c_owner:"
            assert re.search(url, details.raw, re.MULTILINE), details

            # A killed worker is started again, and the new one provisions.
            os.kill(recorded(state, "worker"), signal.SIGKILL)
            wait_online(client, create_project(client, name + "b"))

            # Metrics: the API's (with the printed token) and the restarted worker's SDK metrics.
            api_metrics = metric_samples(client.get("/metrics").raise_for_status().text)
            online = 3  # name (API), name + "c" (the CLI), name + "b" (after the worker was killed)
            assert api_metrics[("tenantflow_runs", (("kind", "project"), ("status", "online")))] == online
        worker_url = f"http://127.0.0.1:{ports.worker_metrics}/metrics"
        assert worker_url in first.text()
        worker_metrics = metric_samples(httpx.get(worker_url, timeout=10).raise_for_status().text)
        assert worker_metrics[("temporal_workflow_completed_total", (
            ("namespace", "default"), ("service_name", "temporal-core-sdk"), ("task_queue", "tenantflow"),
            ("workflow_type", "ProvisionProjectWorkflow")))] >= 1
        ui = httpx.get(f"http://127.0.0.1:{ports.temporal_ui}/", timeout=10)
        assert ui.status_code == 200
        assert_private(first, state)
        stop_and_check_all_gone(first, state)

    with devstack(state, ports, tmp_path / "second.out") as second:
        assert wait_until_up(second) == token, "the API token must survive a restart"
        with httpx.Client(base_url=second.api, headers=headers, timeout=10) as client:
            again = client.get(f"/v1/projects/{project_id}").raise_for_status().json()
        assert (again["name"], again["status"]) == (name, "online")
        stop_and_check_all_gone(second, state)

