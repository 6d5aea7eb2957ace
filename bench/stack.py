"""The running dev stack as the harness sees it: where it listens, its secrets, its processes.

Everything is read, nothing is started: the API URL and token, the Postgres password come from the
stack's state directory (``secrets.json``), the ports from the same flags ``python -m devstack``
takes (with its defaults). CPU and memory per process come from ``/proc``: the pids the stack
records in ``children.json`` (checked against their start time, so a reused pid is not mistaken
for a child), each with all its descendants (Postgres backends, several uvicorn workers).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from devstack.stack import HOST, MIRROR_DB, Ports

# The stack's children, in the order the report lists them (devstack.stack names them so).
PROCESS_NAMES = ("worker", "api", "temporal", "postgres", "arcadedb", "platform")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class BenchError(Exception):
    """The harness cannot run: the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """Where the dev stack under test listens, and the secrets the harness needs to talk to it."""

    state_dir: Path
    ports: Ports
    api_token: str = field(repr=False)
    postgres_password: str = field(repr=False)

    @classmethod
    def load(cls, state_dir: Path, ports: Ports) -> Target:
        """The stack whose state is in ``state_dir`` and whose ports are ``ports``.

        Raises:
            BenchError: no readable ``secrets.json`` there (no stack was ever started on it).
        """
        path = Path(state_dir) / "secrets.json"
        try:
            secrets = json.loads(path.read_text())
            return cls(Path(state_dir), ports, secrets["api_token"], secrets["postgres_password"])
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(
                f"cannot read the dev stack's secrets at {path} ({type(exc).__name__}): start one with "
                "scripts/dev (in another terminal), or pass the --state-dir it uses"
            ) from None

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.ports.api}"

    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.ports.temporal}"

    @property
    def mirror_url(self) -> str:
        """The mirror database's URL, password included: never print it."""
        return f"postgresql://postgres:{self.postgres_password}@{HOST}:{self.ports.postgres}/{MIRROR_DB}"


# ----------------------------------------------------------------------------------- processes
@dataclass(frozen=True)
class _Stat:
    ppid: int
    cpu_ticks: int  # utime + stime + cutime + cstime: its own and its reaped children's
    start_ticks: str
    rss_pages: int


@dataclass(frozen=True)
class Usage:
    """One process tree at one moment: CPU used so far, memory now."""

    root: tuple[int, str]  # pid and start time: the same process only if both match
    cpu_seconds: float
    rss_bytes: int
    processes: int


def _stat(pid: int) -> _Stat | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return _Stat(int(fields[1]), utime + stime + cutime + cstime, fields[19], int(fields[21]))


def _all_stats() -> dict[int, _Stat]:
    stats: dict[int, _Stat] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    return stats


def recorded_children(state_dir: Path) -> dict[str, int]:
    """The stack's children by name (``children.json``), those still running as recorded."""
    with contextlib.suppress(OSError, ValueError):
        children = json.loads((Path(state_dir) / "children.json").read_text())
        alive = {}
        for child in children:
            stat = _stat(int(child["pid"]))
            if stat is not None and stat.start_ticks == str(child["ticks"]):
                alive[str(child["name"])] = int(child["pid"])
        return alive
    return {}


def _tree(root: int, stats: dict[int, _Stat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, frontier = [root], [root]
    while frontier:
        frontier = [c for p in frontier for c in children.get(p, [])]
        found += frontier
    return found


def usage(state_dir: Path, *, include_self: bool = True,
          extra: dict[str, int] | None = None) -> dict[str, Usage]:
    """CPU and RSS of each of the stack's process trees, of this process alone (``bench``, when
    ``include_self``) and of the ``extra`` trees (name: root pid)."""
    stats = _all_stats()
    roots = {**recorded_children(state_dir), **(extra or {})}
    result = {name: found for name, root in roots.items() if (found := _usage(_tree(root, stats), stats))}
    if include_self and (own := _usage([os.getpid()], stats)):
        result["bench"] = own
    return result


def _usage(pids: list[int], stats: dict[int, _Stat]) -> Usage | None:
    """The usage of ``pids``, the first being the root; None if the root is gone."""
    if not pids or pids[0] not in stats:
        return None
    alive = [p for p in pids if p in stats]
    return Usage(root=(pids[0], stats[pids[0]].start_ticks),
                 cpu_seconds=sum(stats[p].cpu_ticks for p in alive) / CLOCK_TICKS,
                 rss_bytes=sum(stats[p].rss_pages for p in alive) * PAGE_SIZE, processes=len(alive))


def cpu_used(before: dict[str, Usage], after: dict[str, Usage]) -> dict[str, float | None]:
    """CPU seconds each tree used between two ``usage`` readings; None when its root process was
    replaced meanwhile (the stack restarted it) or is gone."""
    used: dict[str, float | None] = {}
    for name, first in before.items():
        last = after.get(name)
        used[name] = last.cpu_seconds - first.cpu_seconds if last and last.root == first.root else None
    return used


def pinned_cpus(pid: int) -> set[int] | None:
    """The CPUs ``pid`` may run on (None if it cannot be asked)."""
    try:
        return set(os.sched_getaffinity(pid))
    except OSError:
        return None


# ------------------------------------------------------------------------------------ machine
def cores() -> int:
    return os.cpu_count() or 1


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)


def megabytes(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.0f} MB"
