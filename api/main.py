"""The FastAPI application: ``create_app`` builds it; the lifespan opens what routes share.

Serve it with ``uvicorn api.main:app`` (settings from ``TENANTFLOW_*`` at start-up) or
``uvicorn --factory api.main:create_app``. API docs at ``/docs`` and ``/redoc`` (local assets).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api import console, errors, metrics
from api.docs import SWAGGER_UI_PARAMETERS, document_shared_errors
from api.events import EventHub
from api.limits import BodySizeLimit
from api.routes import bulk, health, keys, projects, users, webhooks
from tenantflow.api_keys import ApiKeyStore
from tenantflow.credentials import CredentialStore
from tenantflow.crypto import Keyring
from tenantflow.db import libpq_url, make_engine
from tenantflow.read_pool import ReadPool
from tenantflow.settings import Settings, get_settings
from tenantflow.store import Store
from tenantflow.temporal import connect


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API. ``settings`` default to the environment's, read when the app starts (not on import)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        database_url = resolved.database_url.get_secret_value()
        engine = make_engine(database_url, pool_size=resolved.api_db_connections)
        reads = ReadPool(database_url, size=resolved.api_db_connections)
        events = EventHub(libpq_url(database_url))
        try:
            app.state.settings = resolved
            app.state.reads = reads
            await reads.open()
            app.state.store = Store(engine)
            app.state.api_keys = ApiKeyStore(engine)
            app.state.credentials = CredentialStore(
                engine, Keyring(resolved.encryption_keys.get_secret_value())
            )
            app.state.temporal = await connect(resolved)
            app.state.events = events
            await events.start()
            freeze_startup_objects()
            yield
        finally:
            await events.stop()
            await reads.close()
            await engine.dispose()

    # FastAPIOffline: /docs and /redoc load their scripts from the app, not from a CDN.
    app = FastAPIOffline(
        title="tenantflow",
        summary="Durable tenant provisioning on Temporal.",
        version="0.1.0",
        lifespan=lifespan,
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    errors.install(app)
    metrics.install(app)
    for router in (health.router, bulk.router, projects.router, users.router, webhooks.router, keys.router):
        app.include_router(router)
    document_shared_errors(app)
    console.install(app)
    # Outermost (added last): bodies are bounded before auth, parsing or anything else reads them.
    app.add_middleware(BodySizeLimit)
    return app


def freeze_startup_objects() -> None:
    """Take what exists once the app has started (modules, the app, its routes and models, about
    180,000 objects, all living as long as the process) out of the garbage collector's sight. A
    full collection walked them all: 85-95 ms, every request in flight waiting, every few seconds
    under load (the status read's p99). Once per process: the first app's start (tests
    start many apps in one process; garbage is collected first, so none is kept)."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


app = create_app()
