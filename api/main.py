"""The FastAPI application: ``create_app`` builds it; the lifespan opens what routes share.

Serve it with ``uvicorn api.main:app`` (settings from ``TENANTFLOW_*`` at start-up) or
``uvicorn --factory api.main:create_app``. OpenAPI at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, metrics
from api.routes import bulk, health, projects, users, webhooks
from tenantflow.credentials import CredentialStore
from tenantflow.crypto import Keyring
from tenantflow.db import make_engine
from tenantflow.settings import Settings, get_settings
from tenantflow.store import Store
from tenantflow.temporal import connect


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API. ``settings`` default to the environment's, read when the app starts (not on import)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        engine = make_engine(resolved.database_url.get_secret_value())
        try:
            app.state.settings = resolved
            app.state.store = Store(engine)
            app.state.credentials = CredentialStore(
                engine, Keyring(resolved.encryption_keys.get_secret_value())
            )
            app.state.temporal = await connect(resolved)
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="tenantflow",
        summary="Durable tenant provisioning on Temporal.",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    metrics.install(app)
    for router in (health.router, bulk.router, projects.router, users.router, webhooks.router):
        app.include_router(router)
    return app


app = create_app()
