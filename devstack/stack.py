"""The whole system on one machine: ``python -m devstack``.

Starts these, and stops them in the reverse order of their start:

    Postgres (mirror ``tenantflow``, stand-ins ``standins``, tenant databases)
    Temporal dev server (sqlite file, Web UI, ``TenantId`` search attribute)
    ArcadeDB (graph backend, Bolt + HTTP; its JVM starts while the two above do)
    platform stand-ins (auth / realtime / storage admin APIs)  \
    worker (``python worker.py``)                                > launched together, then awaited
    API (uvicorn)                                              /

Everything lives in one state directory (``.tenantflow/dev`` by default): ``secrets.json`` (made on
the first run, reused after), each server's data, and ``logs/`` with one log per process. The
children get the ``TENANTFLOW_*`` settings through their environment, built from ``Settings``
field names so a renamed field breaks here loudly rather than silently.

Signals only set a flag; the flag is checked between steps and in every wait loop, so a child is
never half-started when the stack stops. Children run in sessions of their own (Ctrl-C in the
terminal reaches the launcher only, which stops them in order) and the Python ones die with the
launcher if it is killed outright (``PR_SET_PDEATHSIG``); whatever a killed launcher leaves behind
is stopped by the next start (``children.json``). A worker, API or stand-in that dies is started
again; a server that dies stops the stack.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from devstack.arcadedb import ArcadeDBServer
from devstack.postgres import PostgresServer
from devstack.temporal import TemporalDevServer
from tenantflow.crypto import generate_key
from tenantflow.settings import GraphBackend, Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".tenantflow" / "dev"
HOST = "127.0.0.1"
API_APP = "api.main:app"
MIRROR_DB = "tenantflow"
STANDINS_DB = "standins"
# A dead worker / API / stand-in is restarted, unless it died this often within the window (s).
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0


class StackError(Exception):
    """The stack cannot start; the message says why and what to do."""


class Interrupted(Exception):
    """SIGINT / SIGTERM / SIGHUP arrived while starting."""


# ---------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Ports:
    """Every port the stack listens on (all on 127.0.0.1). Each is a ``--<name>-port`` flag."""

    api: int = 8000
    postgres: int = 5433
    temporal: int = 7233
    temporal_ui: int = 8233
    temporal_http: int = 7243
    temporal_metrics: int = 9233
    arcadedb_http: int = 2480
    arcadedb_bolt: int = 7687
    platform: int = 8100
    worker_metrics: int = 9464  # the worker's Temporal SDK metrics (Prometheus text at /metrics)

    @staticmethod
    def flag(name: str) -> str:
        return f"--{name.replace('_', '-')}-port"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, whose: str = "") -> None:
        """One ``--<name>-port N`` flag per port, defaulting to the stack's own."""
        defaults = cls()
        for f in dataclasses.fields(cls):
            parser.add_argument(cls.flag(f.name), dest=f"{f.name}_port", type=int, metavar="N",
                                default=getattr(defaults, f.name),
                                help=f"{whose}{f.name.replace('_', ' ')} port (default: %(default)s)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Ports:
        """The ports the flags of ``add_arguments`` chose."""
        return cls(**{f.name: getattr(args, f"{f.name}_port") for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class StackOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    ports: Ports = field(default_factory=Ports)
    graph_backend: GraphBackend = GraphBackend.ARCADEDB
    pg_bindir: Path | None = None
    start_timeout: float = 120.0


SECRET_FACTORIES: dict[str, Callable[[], str]] = {
    "api_token": lambda: "tf_dev_" + secrets.token_urlsafe(24),
    "encryption_keys": lambda: f"dev1:{generate_key()}",
    "postgres_password": lambda: secrets.token_urlsafe(18),
    "arcadedb_password": lambda: secrets.token_urlsafe(18),
    "auth_service_key": lambda: secrets.token_urlsafe(32),
    "realtime_service_key": lambda: secrets.token_urlsafe(32),
    "storage_service_key": lambda: secrets.token_urlsafe(32),
    "webhook_secret": lambda: secrets.token_urlsafe(32),
}


def load_or_create_secrets(path: Path) -> dict[str, str]:
    """The stack's secrets: made on the first run, then reused so the state keeps working.

    A secret added to ``SECRET_FACTORIES`` later is generated and saved on the next start; the
    existing ones never change (the Postgres and ArcadeDB passwords are baked into their data).
    """
    existing: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: make() for name, make in SECRET_FACTORIES.items() if name not in existing}
    if missing:
        _write_private(path, json.dumps({**existing, **missing}, indent=2) + "\n")
    return {**existing, **missing}


def _write_private(path: Path, text: str) -> None:
    """Write a mode-600 file atomically (never readable by others, not even for a moment)."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def settings_environment(settings: Settings) -> dict[str, str]:
    """``Settings`` as the ``TENANTFLOW_*`` variables that reproduce it in a child process."""
    prefix = Settings.model_config.get("env_prefix", "")
    env: dict[str, str] = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"{prefix}{name}".upper()] = str(getattr(value, "value", value))
    return env


# ------------------------------------------------------------------------------------ processes
def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGTERM this child when the launcher dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_ticks(pid: int) -> str | None:
    """Start time of ``pid`` in clock ticks since boot (tells a reused pid apart), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (where /proc tells)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True  # no /proc: kill(0) succeeded
    return state != "Z"


def terminate(pid: int, *, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``pid`` (its whole process group if it leads one), SIGKILL after ``timeout``."""

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    send(sig)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.05)
    if _pid_alive(pid):
        send(signal.SIGKILL)


@dataclass
class Running:
    """Something the stack started and must stop."""

    name: str
    stop: Callable[[], None]
    pid: Callable[[], int | None]
    log: Path
    exit_code: Callable[[], int | None] = lambda: None
    # Starts a replacement when it dies (the worker, the API, the stand-ins); None: it cannot be.
    restart: Callable[[], Running] | None = None
    restarts: list[float] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None


_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def _popen_child(cmd: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        shown = " ".join(_URL_PASSWORD.sub(r"\1***@", arg) for arg in cmd)
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {shown}\n".encode())
        out.flush()
        return subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


class _Background:
    """A blocking start run in a thread; ``join`` waits for it and re-raises what it raised."""

    def __init__(self, name: str, start: Callable[..., None], kwargs: dict[str, Any]) -> None:
        self.name = name
        self.started = time.monotonic()
        self.error: BaseException | None = None

        def run() -> None:
            try:
                start(**kwargs)
            except BaseException as exc:  # handed to the main thread by join()
                self.error = exc

        self.thread = threading.Thread(target=run, name=f"start-{name}", daemon=True)

    def join(self, checkpoint: Callable[[], None] = lambda: None) -> None:
        while self.thread.is_alive():
            checkpoint()
            self.thread.join(0.1)
        if self.error is not None:
            raise self.error


def port_taken(port: int) -> bool:
    """True if something already listens on (or holds) 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------------------- stack
def cli_command() -> str:
    """How to call the ``tenantflow`` CLI from here: its name when it is on PATH, else the
    console script beside this Python (``.venv/bin/tenantflow`` for ``scripts/dev``)."""
    if shutil.which("tenantflow"):
        return "tenantflow"
    script = Path(sys.executable).parent / "tenantflow"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


class DevStack:
    """Starts the dev stack, supervises it, and stops it; see the module docstring."""

    def __init__(self, options: StackOptions, *, out: IO[str] = sys.stdout) -> None:
        self.options = options
        self.ports = options.ports
        self.state_dir = Path(options.state_dir).resolve()
        self.logs = self.state_dir / "logs"
        self.out = out
        self.running: list[Running] = []
        self.stop_requested: int | None = None  # the signal that asked us to stop
        self._lock: IO[str] | None = None
        self.secrets: dict[str, str] = {}
        self._jobs: list[_Background] = []
        self.settings: Settings | None = None

    # ------------------------------------------------------------------ entry point
    def run(self) -> int:
        """Start everything, wait for a signal or a dead child, stop everything. Exit code."""
        started = time.monotonic()
        self._install_signal_handlers()
        try:
            self._prepare_state_dir()  # first: it stops leftovers that would hold our ports
            self._check_ports()
            self._start_all()
            self._say(self.banner(time.monotonic() - started))
            return self._supervise()
        except StackError as exc:
            self._say(f"devstack: {exc}")
            return 2 if not self.running else 1
        except Interrupted:
            self._say("devstack: interrupted while starting")
            return 130
        finally:
            self.stop_all()
            self._release_lock()

    # ------------------------------------------------------------------ checks and state
    def _check_ports(self) -> None:
        ports = dataclasses.asdict(self.ports)
        if self.options.graph_backend is not GraphBackend.ARCADEDB:
            ports.pop("arcadedb_http"), ports.pop("arcadedb_bolt")
        seen: dict[int, str] = {}
        problems = []
        for name, port in ports.items():
            if port in seen:
                problems.append(f"port {port} is given to both {seen[port]} and {name}")
            seen[port] = name
            if port_taken(port):
                problems.append(f"port {port} ({name}) is already in use: stop what holds it "
                                f"(e.g. `ss -ltnp 'sport = :{port}'`) or pass {Ports.flag(name)} N")
        if problems:
            raise StackError("cannot start:\n  " + "\n  ".join(problems))

    def _prepare_state_dir(self) -> None:
        # Only us: everything the stack writes from here on (logs, secrets, data, children's
        # files) is created 0600/0700. The state dir keeps its owner's search bit for others only
        # where Postgres, run as an unprivileged user when we are root, must reach its data.
        os.umask(0o077)
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_dir.chmod(0o700)
        self.logs.mkdir(exist_ok=True, mode=0o700)
        self.logs.chmod(0o700)
        for log in self.logs.iterdir():  # logs of an older stack, made before this rule
            log.chmod(0o600)
        lock = open(self.state_dir / "stack.lock", "a+")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            other = lock.read().strip() or "?"
            lock.close()
            raise StackError(f"another devstack (pid {other}) is running on {self.state_dir}") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        self._kill_leftovers()
        self.secrets = load_or_create_secrets(self.state_dir / "secrets.json")

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _kill_leftovers(self) -> None:
        """Stop children of a previous launcher that was killed before it could stop them."""
        record = self.state_dir / "children.json"
        if not record.exists():
            return
        for child in json.loads(record.read_text() or "[]"):
            if _start_ticks(child["pid"]) == child["ticks"]:
                self._say(f"  stopping {child['name']} (pid {child['pid']}) left over from a previous run")
                # SIGINT is Postgres' fast shutdown; SIGTERM would wait for clients to leave.
                terminate(child["pid"], sig=signal.SIGINT if child["name"] == "postgres" else signal.SIGTERM)
        record.unlink()

    def _record_children(self) -> None:
        children = []
        for r in self.running:
            pid = r.pid()
            if pid is not None and (ticks := _start_ticks(pid)) is not None:
                children.append({"name": r.name, "pid": pid, "ticks": ticks})
        (self.state_dir / "children.json").write_text(json.dumps(children))

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            if self.stop_requested is None:
                self.stop_requested = signum
            else:
                self._say("devstack: already stopping, please wait")

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, handler)

    def _checkpoint(self) -> None:
        if self.stop_requested is not None:
            raise Interrupted

    # ------------------------------------------------------------------ start
    def _start_all(self) -> None:
        """Servers first (ArcadeDB's JVM warms up meanwhile), then the three Python children at once.

        The children need the servers, not each other, so they are launched together and then
        waited for one by one; every start is timed on its own.
        """
        arcadedb: _Background | None = None
        if self.options.graph_backend is GraphBackend.ARCADEDB:
            arcadedb = self._background("arcadedb", self._arcadedb_server().start,
                                        timeout=self.options.start_timeout)
        self._step("postgres", self._start_postgres)
        self._step("temporal", self._start_temporal)
        if arcadedb is not None:
            self._step("arcadedb", lambda: arcadedb.join(self._checkpoint), started=arcadedb.started)
        self.settings = self._build_settings()
        launched = [(name, time.monotonic(), launch()) for name, launch in (
            ("platform", self._launch_platform), ("worker", self._launch_worker), ("api", self._launch_api))]
        for name, started, wait in launched:
            self._step(name, wait, started=started)

    def _step(self, name: str, start: Callable[[], None], *, started: float | None = None) -> None:
        """Run one start (or wait), turn its failure into a StackError that shows the log's tail."""
        self._checkpoint()
        t0 = time.monotonic() if started is None else started
        try:
            start()
        except (StackError, Interrupted):
            raise
        except Exception as exc:
            log = self.logs / f"{name}.log"
            raise StackError(f"{name} did not start: {exc}\n--- {log} (last lines)\n{tail(log)}") from exc
        self._record_children()
        self._say(f"  {name:<9} ready in {time.monotonic() - t0:4.1f} s")

    def _background(self, name: str, start: Callable[..., None], **kwargs: Any) -> _Background:
        job = _Background(name, start, kwargs)
        self._jobs.append(job)
        job.thread.start()
        return job

    def _start_postgres(self) -> None:
        server = PostgresServer(self.state_dir / "postgres", port=self.ports.postgres,
                                password=self.secrets["postgres_password"], bindir=self.options.pg_bindir)
        # We hold the state lock, so a running postmaster on this data directory is a leftover.
        server.stop()
        self.postgres = server
        pid_file = server.data_dir / "postmaster.pid"

        def pid() -> int | None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(pid_file.read_text().split()[0])
            return None

        self.running.append(Running("postgres", server.stop, pid, self.logs / "postgres.log",
                                    lambda: None if (p := pid()) and _pid_alive(p) else -1))
        server.start(timeout=self.options.start_timeout, log_file=self.logs / "postgres.log")
        from tenantflow import db

        server.create_database(MIRROR_DB)
        db.upgrade(server.url(MIRROR_DB))
        server.create_database(STANDINS_DB)

    def _start_temporal(self) -> None:
        p = self.ports
        server = TemporalDevServer(self.state_dir / "temporal" / "temporal.db", port=p.temporal,
                                   ui_port=p.temporal_ui, http_port=p.temporal_http,
                                   metrics_port=p.temporal_metrics)
        self.temporal = server

        def exit_code() -> int | None:
            return server.proc.poll() if server.proc else -1

        self.running.append(Running("temporal", server.stop, lambda: server.proc.pid if server.proc else None,
                                    self.logs / "temporal.log", exit_code))
        server.start(log_file=self.logs / "temporal.log", timeout=self.options.start_timeout)

    def _arcadedb_server(self) -> ArcadeDBServer:
        """The ArcadeDB server, registered to be stopped (its start runs in the background)."""
        p = self.ports
        log = self.logs / "arcadedb.log"
        server = ArcadeDBServer(self.state_dir / "arcadedb", http_port=p.arcadedb_http,
                                bolt_port=p.arcadedb_bolt, password=self.secrets["arcadedb_password"],
                                log_file=log)

        def exit_code() -> int | None:
            return server.proc.poll() if server.proc else -1

        self.running.append(Running("arcadedb", server.stop, lambda: server.proc.pid if server.proc else None,
                                    log, exit_code))
        return server

    def _build_settings(self) -> Settings:
        """The settings every child gets; validated here so a mistake shows before they start."""
        s, p = self.secrets, self.ports
        platform = f"http://{HOST}:{p.platform}"
        values: dict[str, Any] = dict(
            environment="dev",
            database_url=self.postgres.url(MIRROR_DB),
            tenant_pg_admin_url=self.postgres.url(),
            temporal_address=self.temporal.address,
            api_token=s["api_token"],
            encryption_keys=s["encryption_keys"],
            graph_backend=self.options.graph_backend,
            auth_service_url=f"{platform}/auth",
            auth_service_key=s["auth_service_key"],
            realtime_service_url=f"{platform}/realtime",
            realtime_service_key=s["realtime_service_key"],
            storage_service_url=f"{platform}/storage",
            storage_service_key=s["storage_service_key"],
            webhook_secret=s["webhook_secret"],
            worker_metrics_address=f"{HOST}:{p.worker_metrics}",
        )
        if self.options.graph_backend is GraphBackend.ARCADEDB:
            values.update(arcadedb_http_url=f"http://{HOST}:{p.arcadedb_http}",
                          arcadedb_bolt_uri=f"bolt://{HOST}:{p.arcadedb_bolt}",
                          arcadedb_user="root", arcadedb_password=s["arcadedb_password"])
        return Settings(**values)

    def child_env(self) -> dict[str, str]:
        """The launcher's environment plus the stack's settings (which win)."""
        assert self.settings is not None
        return {**os.environ, "PYTHONUNBUFFERED": "1", **settings_environment(self.settings)}

    def _launch(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start a child process; it is stopped with the stack and restarted if it dies."""
        log = self.logs / f"{name}.log"

        def start() -> Running:
            proc = _popen_child(cmd, env=env, log=log)
            return Running(name, lambda: terminate(proc.pid), lambda: proc.pid, log, proc.poll, start,
                           proc=proc)

        running = start()
        self.running.append(running)
        assert running.proc is not None
        return running.proc

    def _launch_platform(self) -> Callable[[], None]:
        # The stand-ins check the same admin keys the worker sends (their --*-key defaults).
        s = self.secrets
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "TENANTFLOW_AUTH_SERVICE_KEY": s["auth_service_key"],
               "TENANTFLOW_REALTIME_SERVICE_KEY": s["realtime_service_key"],
               "TENANTFLOW_STORAGE_SERVICE_KEY": s["storage_service_key"],
               # In the environment, not on the command line: ps shows every user the arguments.
               "STANDINS_DATABASE_URL": self.postgres.url(STANDINS_DB)}
        cmd = [sys.executable, "-m", "standins.platform", "--port", str(self.ports.platform)]
        proc = self._launch("platform", cmd, env)
        return lambda: self._wait_http(f"http://{HOST}:{self.ports.platform}/", proc, any_status=True)

    def _launch_worker(self) -> Callable[[], None]:
        proc = self._launch("worker", [sys.executable, "worker.py"], self.child_env())
        return lambda: self._wait(lambda: self._worker_polling(proc.pid), proc,
                                  what="the worker to poll its task queue")

    def _launch_api(self) -> Callable[[], None]:
        cmd = [sys.executable, "-m", "uvicorn", API_APP, "--host", HOST, "--port", str(self.ports.api)]
        proc = self._launch("api", cmd, self.child_env())
        return lambda: self._wait_http(f"http://{HOST}:{self.ports.api}/healthz", proc)

    def _worker_polling(self, pid: int) -> bool:
        """True once the worker (by its default identity ``pid@host``) polls for workflow tasks.

        Asked through the dev server's HTTP API, so the launcher needs no Temporal client.
        """
        assert self.settings is not None
        url = (f"http://{HOST}:{self.ports.temporal_http}/api/v1/namespaces/"
               f"{self.settings.temporal_namespace}/task-queues/{self.settings.task_queue}")
        response = httpx.get(url, params={"taskQueueType": "TASK_QUEUE_TYPE_WORKFLOW"}, timeout=2)
        pollers = response.raise_for_status().json().get("pollers", [])
        return any(p.get("identity", "").startswith(f"{pid}@") for p in pollers)

    # ------------------------------------------------------------------ waiting
    def _wait(self, ready: Callable[[], bool], proc: subprocess.Popen[bytes], *, what: str) -> None:
        deadline = time.monotonic() + self.options.start_timeout
        while True:
            self._checkpoint()
            if proc.poll() is not None:
                raise RuntimeError(f"exited with code {proc.returncode} while waiting for {what}")
            with contextlib.suppress(Exception):
                if ready():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {self.options.start_timeout:.0f} s waiting for {what}")
            time.sleep(0.2)

    def _wait_http(self, url: str, proc: subprocess.Popen[bytes], *, any_status: bool = False) -> None:
        def ready() -> bool:
            status = httpx.get(url, timeout=2).status_code
            return any_status or status == 200

        self._wait(ready, proc, what=f"{url} to answer")

    # ------------------------------------------------------------------ run and stop
    def _supervise(self) -> int:
        """Until a signal: watch the children.

        A dead worker, API or stand-in is started again (killing the worker mid-run is how to see
        Temporal resume a run), unless it died ``MAX_RESTARTS`` times within ``RESTART_WINDOW``
        seconds; a dead server, or a child dying in a loop, takes the stack down (exit 1).
        """
        while self.stop_requested is None:
            for i, r in enumerate(self.running):
                code = r.exit_code()
                if code is None:
                    continue
                now = time.monotonic()
                recent = [t for t in r.restarts if now - t < RESTART_WINDOW]
                if r.restart is None or len(recent) >= MAX_RESTARTS:
                    self._say(f"devstack: {r.name} exited (code {code}); stopping the stack.\n"
                              f"--- {r.log} (last lines)\n{tail(r.log)}")
                    return 1
                self._say(f"devstack: {r.name} exited (code {code}); starting it again (log: {r.log})")
                replacement = r.restart()
                replacement.restarts = [*recent, now]
                self.running[i] = replacement
                self._record_children()
            time.sleep(0.5)
        self._say(f"devstack: {signal.Signals(self.stop_requested).name} received, stopping")
        return 0

    def stop_all(self) -> None:
        """Stop what was started, newest first; each stop is independent of the others' success."""
        for job in self._jobs:  # a start still under way must end before its server is stopped
            job.thread.join()
        while self.running:
            r = self.running.pop()
            t0 = time.monotonic()
            try:
                r.stop()
            except Exception as exc:  # keep stopping the rest
                self._say(f"  {r.name:<9} failed to stop cleanly: {exc}")
                pid = r.pid()
                if pid is not None:
                    terminate(pid)
            else:
                self._say(f"  {r.name:<9} stopped in {time.monotonic() - t0:4.1f} s")
        with contextlib.suppress(OSError):
            (self.state_dir / "children.json").unlink()

    # ------------------------------------------------------------------ output
    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def banner(self, seconds: float) -> str:
        p, token = self.ports, self.secrets["api_token"]
        api = f"http://{HOST}:{p.api}"
        lines = [
            f"tenantflow dev stack is up ({seconds:.1f} s). Ctrl-C stops everything.",
            "",
            f"  API               {api}",
            f"  API docs          {api}/docs",
            f"  Temporal Web UI   http://{HOST}:{p.temporal_ui}",
            f"  Temporal gRPC     {HOST}:{p.temporal}",
            f"  API metrics       {api}/metrics  (Bearer: the API token)",
            f"  Worker metrics    http://{HOST}:{p.worker_metrics}/metrics  (Temporal SDK)",
        ]
        if self.options.graph_backend is GraphBackend.ARCADEDB:
            lines.append(f"  ArcadeDB studio   http://{HOST}:{p.arcadedb_http}  (user root, password: "
                         "arcadedb_password in secrets.json)")
        lines += [
            f"  Postgres          postgresql://postgres@{HOST}:{p.postgres}/{MIRROR_DB}  (password: "
            "postgres_password in secrets.json)",
            f"  State and logs    {self.state_dir}  (secrets.json, logs/)",
            "",
            f"API token: {token}",
            "",
            "For the tenantflow CLI (paste into your shell):",
            f"  export TENANTFLOW_API_URL={api} TENANTFLOW_API_TOKEN={token}",
            "",
            "Try:",
            f"  {cli_command()} create acme --wait",
            f"  curl -s -X POST {api}/v1/projects -H 'Authorization: Bearer {token}' "
            "-H 'Content-Type: application/json' -d '{\"name\": \"acme\"}'",
        ]
        return "\n".join(lines)
