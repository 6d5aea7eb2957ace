"""Placeholder entry point; the CLI lands with issue 10."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("tenantflow CLI: not built yet")
