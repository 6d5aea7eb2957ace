"""The ``tenantflow`` command line: a client of the HTTP API (``cli.main``)."""
