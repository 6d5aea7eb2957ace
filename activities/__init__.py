"""Temporal activities: one module per external system, all sharing ``Deps`` and ``mirror``."""
