"""``/v1/users``: the per-user tenant of a signed-up user, as that user's client polls it."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from api.deps import RequireApiToken, StoreDep
from api.schemas import UserStatus

router = APIRouter(prefix="/v1/users", tags=["users"], dependencies=[RequireApiToken])


@router.get(
    "/{user_id}/status",
    response_model=UserStatus,
    responses={404: {"description": "No tenant for this user (the signup webhook has not arrived)."}},
)
async def user_status(user_id: uuid.UUID, store: StoreDep) -> UserStatus:
    """``pending`` while provisioning, ``ready`` once online, ``failed`` when a step failed."""
    project = await store.get_user_project(user_id)
    if project is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no tenant for user {user_id}")
    return UserStatus.from_rows(project, await store.get_steps(project.id))
