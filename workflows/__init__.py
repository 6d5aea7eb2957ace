"""Temporal workflows: deterministic orchestration only (no I/O, no clocks, no randomness)."""
