"""``/v1/users``: the per-user tenant of a signed-up user, as that user's client polls it."""

from __future__ import annotations

from typing import Annotated

import jwt
from fastapi import APIRouter, Depends, HTTPException, Path, status

from api.deps import ApiKeysDep, BearerDep, SettingsDep, StoreDep, authenticate
from api.schemas import UserStatus
from tenantflow.catalog import Scope
from tenantflow.names import CANONICAL_UUID_PATTERN, canonical_uuid

router = APIRouter(prefix="/v1/users", tags=["users"])

UserIdPath = Annotated[
    str, Path(pattern=CANONICAL_UUID_PATTERN, description="The user's UUID (36 characters).")
]


async def user_or_reader(
    user_id: UserIdPath, settings: SettingsDep, keys: ApiKeysDep, credentials: BearerDep
) -> None:
    """The user themselves (the auth service's HS256 JWT for them, ``sub`` = ``user_id``), or an
    API key with scope ``read``.

    Raises:
        HTTPException: 401 without a valid token or key; 403 for another user's token or a key
            without ``read``.
    """
    token = credentials.credentials if credentials else ""
    secret = settings.platform_jwt_secret.get_secret_value()
    if secret and token.count(".") == 2:
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"],
                                options={"require": ["sub", "exp"], "verify_aud": False})
        except jwt.PyJWTError:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or expired user token",
                                headers={"WWW-Authenticate": "Bearer"}) from None
        if canonical_uuid(claims["sub"]) != canonical_uuid(user_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "a user's token reads only that user's status")
        return
    caller = await authenticate(settings, keys, credentials)
    if not caller.allows(Scope.READ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the key {caller.name!r} cannot read")


@router.get(
    "/{user_id}/status",
    response_model=UserStatus,
    responses={404: {"description": "No tenant for this user (the signup webhook has not arrived)."}},
    dependencies=[Depends(user_or_reader)],
)
async def user_status(user_id: UserIdPath, store: StoreDep) -> UserStatus:
    """``pending`` while provisioning, ``ready`` once online, ``failed`` when a step failed.

    Readable by an API key with scope ``read``, or by the user's own app with the user's token
    from the auth service (``Authorization: Bearer <JWT>``, HS256, ``sub`` = this id)."""
    uid = canonical_uuid(user_id)
    assert uid is not None  # the path pattern admits only canonical UUIDs
    project = await store.get_user_project(uid)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no tenant for user {uid}")
    return UserStatus.from_rows(project, await store.get_steps(project.id))
