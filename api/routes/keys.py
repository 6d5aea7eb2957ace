"""``/v1/api-keys``: create, list and revoke API keys (scope ``admin``). A key is shown once, in the
answer that creates it; afterwards only its prefix is known (``tenantflow.api_keys``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, status

from api.deps import ApiKeysDep, RequireAdmin
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"], dependencies=[RequireAdmin])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_key(body: ApiKeyCreate, keys: ApiKeysDep) -> ApiKeyCreated:
    """A new key with ``scope`` (``read`` < ``write`` < ``admin``): store ``key`` now, it is never
    shown again."""
    row, key = await keys.create(name=body.name, scope=body.scope)
    return ApiKeyCreated(**ApiKeyOut.model_validate(row, from_attributes=True).model_dump(), key=key)


@router.get("", response_model=list[ApiKeyOut])
async def list_keys(keys: ApiKeysDep) -> list[ApiKeyOut]:
    """Every key, revoked ones too, oldest first (prefixes only, never a key)."""
    return [ApiKeyOut.model_validate(row, from_attributes=True) for row in await keys.list()]


@router.delete("/{key_id}", response_model=ApiKeyOut, responses={404: {"description": "No such key."}})
async def revoke_key(key_id: uuid.UUID, keys: ApiKeysDep) -> ApiKeyOut:
    """Revoke the key at once (its next request is a 401); a repeat is harmless."""
    row = await keys.revoke(key_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id}")
    return ApiKeyOut.model_validate(row, from_attributes=True)
