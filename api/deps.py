"""What routes get injected: settings, the mirror store, the Temporal client, the API token check.

The lifespan (``api.main``) puts the shared objects on ``app.state``; these dependencies hand them
to routes as ``Annotated`` types, so a route declares ``store: StoreDep`` and never builds one.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from tenantflow.settings import Settings
from tenantflow.store import Store


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> Store:
    return request.app.state.store


def _temporal(request: Request) -> Client:
    return request.app.state.temporal


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
TemporalDep = Annotated[Client, Depends(_temporal)]

# auto_error=False: a missing header gets our 401 (with WWW-Authenticate), not FastAPI's default.
_bearer = HTTPBearer(auto_error=False, description="The API token (TENANTFLOW_API_TOKEN).")


def require_api_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Accept the request only with ``Authorization: Bearer <settings.api_token>``.

    Raises:
        HTTPException: 401 with ``WWW-Authenticate: Bearer`` when the token is missing or wrong.
    """
    expected = settings.api_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials else b""
    # compare_digest takes the same time wherever the first difference is; an unset token
    # (empty) never authenticates anybody.
    if not (expected and given and hmac.compare_digest(given, expected)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API token",
            headers={"WWW-Authenticate": "Bearer"},
        )


RequireApiToken = Depends(require_api_token)
