"""``scripts/bench`` end to end, against a real dev stack started here on free ports with its own
state directory, as a person runs it (``scripts/dev`` in one terminal, ``scripts/bench`` in another).

Under ``scripts/test`` (CI) the interpreter is the repository's ``.venv``, and the test runs the
``scripts/bench`` wrapper itself; run from another interpreter it runs what the wrapper execs,
``python -m bench``, so it never makes a ``.venv`` of its own.

``SKIP_DEVSTACK_TEST=1`` skips it, as it does the dev stack's own test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from devstack.ports import free_port
from devstack.stack import Ports
from tests.test_devstack import devstack, wait_until_up

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(os.environ.get("SKIP_DEVSTACK_TEST") == "1", reason="SKIP_DEVSTACK_TEST=1"),
    pytest.mark.timeout(300),
]


@dataclasses.dataclass(frozen=True)
class Stack:
    state: Path
    ports: Ports
    token: str

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    def flags(self) -> list[str]:
        ports = [arg for f in dataclasses.fields(Ports)
                 for arg in (Ports.flag(f.name), str(getattr(self.ports, f.name)))]
        return ["--state-dir", str(self.state), *ports]

    def mirror(self) -> str:
        password = json.loads((self.state / "secrets.json").read_text())["postgres_password"]
        return f"postgresql://postgres:{password}@127.0.0.1:{self.ports.postgres}/tenantflow"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("bench-stack")
    ports = Ports(**{f.name: free_port() for f in dataclasses.fields(Ports)})
    with devstack(tmp / "state", ports, tmp / "stack.out") as launched:
        yield Stack(tmp / "state", ports, wait_until_up(launched))


def bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``scripts/bench ARGS`` (see the module docstring for when it is ``python -m bench``)."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    in_repo_venv = venv_python.exists() and Path(sys.prefix).resolve() == venv_python.parent.parent.resolve()
    command = [str(ROOT / "scripts" / "bench")] if in_repo_venv else [sys.executable, "-m", "bench"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def sections(output: str) -> dict[str, str]:
    """The report's sections by name (a name printed twice, like ``machine``, joined)."""
    found: dict[str, str] = {}
    for block in re.split(r"^== ", output, flags=re.MULTILINE)[1:]:
        name = block.split(":", 1)[0]
        found[name] = found.get(name, "") + block
    return found


def test_bench_measures_a_running_stack_and_prints_every_ratio(stack: Stack, tmp_path: Path) -> None:
    figures = tmp_path / "bench.json"
    done = bench("--quick", "--only", "anchors,latency,reads,listing", "--json", str(figures), *stack.flags())
    assert done.returncode == 0, done.stdout + done.stderr
    report = sections(done.stdout)
    assert set(report) == {"machine", "anchors", "latency", "reads", "listing", "summary"}, done.stdout
    for name in ("anchors", "latency", "reads", "listing"):
        ratio = r"^   ratio  .+ = \d+\.\d\d  \((goal [≤≥] [\d.]+\)  (PASS|FAIL)|reference: no goal\))$"
        assert re.search(ratio, report[name], re.MULTILINE), report[name]
    assert "cores " in report["machine"] and "load average at the end" in report["machine"]
    assert re.search(r"worker \(pid \d+", report["machine"]), report["machine"]
    # Every goal of these sections is in the summary with its verdict.
    verdicts = re.findall(r"^   (\w+) .+ goal [≤≥] [\d.]+ +(PASS|FAIL)$", report["summary"], re.MULTILINE)
    assert [section for section, _ in verdicts] == ["latency", "reads", "reads", "listing"], report["summary"]

    numbers = json.loads(figures.read_text())
    anchors, latency = numbers["sections"]["anchors"], numbers["sections"]["latency"]
    reads, listing = numbers["sections"]["reads"], numbers["sections"]["listing"]
    assert 0 < anchors["local_p50_ms"] < anchors["regular_p50_ms"] and anchors["regular_runs_per_s"] > 0
    assert latency["online"] == latency["runs"] == 5
    assert 0 < latency["critical_path_p50_ms"] < latency["latency_p50_ms"]
    assert reads["same_document"] is True
    assert reads["api"]["failed"] == reads["yardstick"]["failed"] == 0
    assert reads["api"]["req_per_s"] > 0 and reads["yardstick"]["req_per_s"] > 0
    assert listing["tenants"] >= 1000 and listing["pages"] >= 10
    assert numbers["errors"] == {}

    # The tenants it made carry the run's name; the listing's rows are marked as bench data.
    run_id = numbers["run_id"]
    headers = {"Authorization": f"Bearer {stack.token}"}
    mine = httpx.get(f"{stack.api}/v1/projects", params={"name_prefix": f"bench-{run_id}-", "limit": 100},
                     headers=headers, timeout=10).raise_for_status().json()["items"]
    assert len(mine) == 1 + 5 and {p["status"] for p in mine} == {"online"}  # the warm-up and 5 runs
    with psycopg.connect(stack.mirror()) as conn:
        row = conn.execute("SELECT count(*), min(status), max(status) FROM projects "
                           "WHERE name LIKE 'bench-list-%'").fetchone()
    assert row is not None and row[0] == listing["inserted"] > 0 and row[1:] == ("online", "online")


def test_reads_fall_back_to_the_python_load_generator_and_cleanup_deletes_only_its_tenants(
    stack: Stack,
) -> None:
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.api, headers=headers, timeout=70) as api:
        other = api.post("/v1/projects", json={"name": "not-the-bench"}).raise_for_status().json()["id"]
        assert api.get(f"/v1/projects/{other}", params={"wait_for": "online", "timeout": 60}).json()[
            "status"] == "online"

        done = bench("--only", "latency,reads", "--latency-runs", "1", "--load-seconds", "1",
                     "--load-generator", "python", "--cleanup", *stack.flags())
        assert done.returncode == 0, done.stdout + done.stderr
        report = sections(done.stdout)
        python = r"^   load: the Python load generator .+, (pinned to CPU \d|NOT pinned)"
        load = re.search(python, report["reads"], re.MULTILINE)
        assert load, report["reads"]
        assert re.search(r"^   ratio  API req/s / yardstick req/s = \d", report["reads"], re.MULTILINE)
        assert "2 of 2 deleted" in report["cleanup"], done.stdout  # the warm-up and the one run

        run_id = re.search(r"run id (\w+)", report["machine"])
        assert run_id, report["machine"]
        mine = api.get("/v1/projects", params={"name_prefix": f"bench-{run_id.group(1)}-"}).json()["items"]
        assert len(mine) == 2 and {p["status"] for p in mine} == {"deleted"}
        assert api.get(f"/v1/projects/{other}").json()["status"] == "online"


def test_without_a_stack_it_says_how_to_start_one(tmp_path: Path) -> None:
    done = bench("--quick", "--state-dir", str(tmp_path / "nothing"))
    assert done.returncode == 2
    assert "secrets" in done.stderr and "scripts/dev" in done.stderr, done.stderr

    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "secrets.json").write_text('{"api_token": "t", "postgres_password": "p"}')
    done = bench("--state-dir", str(tmp_path / "stopped"), "--api-port", str(free_port()))
    assert done.returncode == 2
    assert "no dev stack answers at http://127.0.0.1:" in done.stderr and "scripts/dev" in done.stderr
