"""``/v1/users``: the per-user tenant of a signed-up user, as that user's client polls it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status

from api.deps import RequireApiToken, StoreDep
from api.schemas import UserStatus
from tenantflow.names import CANONICAL_UUID_PATTERN, canonical_uuid

router = APIRouter(prefix="/v1/users", tags=["users"], dependencies=[RequireApiToken])


@router.get(
    "/{user_id}/status",
    response_model=UserStatus,
    responses={404: {"description": "No tenant for this user (the signup webhook has not arrived)."}},
)
async def user_status(
    user_id: Annotated[
        str, Path(pattern=CANONICAL_UUID_PATTERN, description="The user's UUID (36 characters).")
    ],
    store: StoreDep,
) -> UserStatus:
    """``pending`` while provisioning, ``ready`` once online, ``failed`` when a step failed."""
    uid = canonical_uuid(user_id)
    assert uid is not None  # the path pattern admits only canonical UUIDs
    project = await store.get_user_project(uid)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no tenant for user {uid}")
    return UserStatus.from_rows(project, await store.get_steps(project.id))
