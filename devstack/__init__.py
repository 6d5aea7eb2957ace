"""The local stack: real Temporal, Postgres and ArcadeDB servers started as child processes.

Used by ``python -m devstack`` (the one-command dev stack) and by the test fixtures.
"""
