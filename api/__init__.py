"""tenantflow's HTTP API (FastAPI): ``api.main.create_app`` builds it, ``api.main:app`` serves it."""
