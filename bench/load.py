"""HTTP load for the reads: ``wrk`` pinned to one core, else ``bench.loadgen`` in its own process.

The load generator must not starve the server it measures, so it runs on one CPU (the last one;
``taskset -c 1`` on 2 cores) while the servers keep every CPU. It is not pinned, and the report
says so, when there is one CPU, ``taskset`` is missing, or the API is already pinned to that CPU.
``wrk`` comes from apt: installed here when missing and we are root (as ``scripts/test`` installs
Chromium), otherwise the report says how and the Python generator measures instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.loadgen import AUTHORIZATION_ENV
from bench.plan import LoadChoice
from bench.stack import pinned_cpus

ROOT = Path(__file__).resolve().parent.parent
WRK_TOKEN_ENV = "BENCH_WRK_AUTHORIZATION"
# wrk reads the header from the environment: a token on its command line would show in ps.
WRK_SCRIPT = f'wrk.headers["Authorization"] = os.getenv("{WRK_TOKEN_ENV}")\n'
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50: float
    p99: float
    failed: int  # answers other than 2xx, plus connection errors and timeouts

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class LoadGenerator:
    """Which program makes the load, and on which CPU (None: not pinned)."""

    kind: Literal["wrk", "python"]
    cpu: int | None
    wrk: str | None = None

    def describe(self) -> str:
        what = "wrk -t1" if self.kind == "wrk" else "the Python load generator (bench.loadgen, own process)"
        return f"{what}, " + (f"pinned to CPU {self.cpu}" if self.cpu is not None else "NOT pinned")

    def run(self, url: str, *, authorization: str, connections: int, seconds: float) -> LoadResult:
        """Load ``url`` for ``seconds`` with ``connections`` connections."""
        if self.kind == "wrk":
            return self._run_wrk(url, authorization=authorization, connections=connections, seconds=seconds)
        cmd = [sys.executable, "-m", "bench.loadgen", url, "--connections", str(connections),
               "--seconds", str(seconds)] + (["--cpu", str(self.cpu)] if self.cpu is not None else [])
        out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, AUTHORIZATION_ENV: authorization},
                             capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        return LoadResult(int(figures["requests"]), figures["seconds"], figures["p50"], figures["p99"],
                          int(figures["non_2xx"]) + int(figures["errors"]))

    def _run_wrk(self, url: str, *, authorization: str, connections: int, seconds: float) -> LoadResult:
        assert self.wrk is not None
        with tempfile.TemporaryDirectory(prefix="tf-bench-wrk-") as tmp:
            script = Path(tmp) / "auth.lua"
            script.write_text(WRK_SCRIPT)
            cmd = [self.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                   "--latency", "-s", str(script), url]
            if self.cpu is not None:
                cmd = ["taskset", "-c", str(self.cpu), *cmd]
            done = subprocess.run(cmd, env={**os.environ, WRK_TOKEN_ENV: authorization}, capture_output=True,
                                  text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise RuntimeError(f"wrk exited {done.returncode}: {(done.stderr or done.stdout)[-500:]}")
        return parse_wrk(done.stdout)


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(text: str) -> LoadResult:
    """The figures of ``wrk --latency`` output.

    Raises:
        ValueError: the text is not wrk's report (the message quotes it).
    """
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", text, re.MULTILINE)
    p50 = re.search(r"^\s*50(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    p99 = re.search(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    if not (total and p50 and p99):
        raise ValueError(f"not wrk --latency output:\n{text[-1000:]}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failed = int(non_2xx.group(1)) if non_2xx else 0
    failed += sum(int(n) for n in sockets.groups()) if sockets else 0
    return LoadResult(int(total.group(1)), _seconds(total.group(2), total.group(3)),
                      _seconds(*p50.groups()), _seconds(*p99.groups()), failed)


def find_or_install_wrk(say: Callable[[str], None]) -> str | None:
    """``wrk``'s path; installed with apt first when missing and we are root. None: unavailable
    (``say`` was told why and how to get it)."""
    if found := shutil.which("wrk"):
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        say("wrk is not installed (and this is not root with apt): `sudo apt-get install wrk` to use it")
        return None
    say("wrk is not installed: apt-get install wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"]
    for cmd in (install, ["apt-get", "update", "-q"], install):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            break
        if cmd is install and done.returncode == 0 and (found := shutil.which("wrk")):
            say(f"installed {found}")
            return found
    say("could not install wrk with apt-get: using the Python load generator")
    return None


def load_cpu(api_pid: int | None, say: Callable[[str], None]) -> int | None:
    """The CPU to pin the load generator to, or None (``say`` was told why not)."""
    mine = pinned_cpus(0) or set()
    if len(mine) < 2:
        say("cannot pin the load generator apart from the servers: only one CPU")
        return None
    cpu = max(mine)
    api = pinned_cpus(api_pid) if api_pid else None
    if api is not None and api <= {cpu}:
        say(f"cannot pin the load generator: the API is pinned to CPU {cpu} itself")
        return None
    return cpu


def choose(preference: LoadChoice, *, api_pid: int | None,
           say: Callable[[str], None]) -> LoadGenerator:
    """The load generator to use: wrk if wanted and available, else the Python one."""
    cpu = load_cpu(api_pid, say)
    wrk = find_or_install_wrk(say) if preference != "python" else None
    if wrk is not None and cpu is not None and not shutil.which("taskset"):
        say("taskset is missing (util-linux): wrk runs NOT pinned")
        cpu = None
    if wrk is None and preference == "wrk":
        raise RuntimeError("--load-generator wrk, but wrk is unavailable")
    return LoadGenerator("wrk", cpu, wrk) if wrk else LoadGenerator("python", cpu)
