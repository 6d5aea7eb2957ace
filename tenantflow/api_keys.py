"""API keys: who may call the API, and for what (``tenantflow.catalog.Scope``).

A key is ``tfk_`` and 43 URL-safe characters (256 random bits), shown once when created; the
database keeps its first 12 characters (to find the row and to tell keys apart in lists) and its
SHA-256, compared in constant time. A plain hash is enough for a random 256-bit secret (nothing to
brute-force); slow password hashes are for secrets people choose. Revoked keys stay listed.

The settings' ``api_token`` is the bootstrap key: scope ``admin``, named ``api-token``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantflow.catalog import SCOPE_RANK, ProjectStatus, Scope
from tenantflow.models import ApiKey, Project, utcnow

K = ApiKey.__table__  # type: ignore[attr-defined]
P = Project.__table__  # type: ignore[attr-defined]

KEY_PREFIX = "tfk_"
PREFIX_CHARS = 12
BOOTSTRAP_NAME = "api-token"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's name and scope (``key_id`` None for the settings' token)."""

    name: str
    scope: Scope
    key_id: uuid.UUID | None = None

    def allows(self, needed: Scope) -> bool:
        return SCOPE_RANK[self.scope] >= SCOPE_RANK[needed]


class ApiKeyStore:
    """The ``api_keys`` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, *, name: str, scope: Scope) -> tuple[ApiKey, str]:
        """A new key; returns its row and the key itself (the only time it is seen)."""
        while True:
            key = KEY_PREFIX + secrets.token_urlsafe(32)
            row = ApiKey(id=uuid.uuid4(), name=name, prefix=key[:PREFIX_CHARS], key_sha256=_digest(key),
                         scope=scope, created_at=utcnow())
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(insert(K).values(**row.model_dump()))
            except IntegrityError:
                continue  # the same 12-character prefix as another key: draw again
            return row, key

    async def list(self) -> list[ApiKey]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(K).order_by(K.c.created_at))).mappings().all()
        return [ApiKey(**r) for r in rows]

    async def revoke(self, key_id: uuid.UUID) -> ApiKey | None:
        """Revoke the key (a repeat keeps the first revocation time); None if there is no such key."""
        async with self.engine.begin() as conn:
            await conn.execute(update(K).where(K.c.id == key_id, K.c.revoked_at.is_(None))
                               .values(revoked_at=utcnow()))
            row = (await conn.execute(select(K).where(K.c.id == key_id))).mappings().first()
        return ApiKey(**row) if row else None

    async def authenticate(self, key: str) -> Principal | None:
        """The principal a presented key stands for, or None (unknown, wrong or revoked)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 100:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(K).where(K.c.prefix == key[:PREFIX_CHARS]))).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None
        if not hmac.compare_digest(bytes(row["key_sha256"]), _digest(key)):
            return None
        return Principal(row["name"], Scope(row["scope"]), row["id"])

    async def live_tenants(self, key_id: uuid.UUID) -> int:
        """How many tenants this key created that are not deleted."""
        async with self.engine.connect() as conn:
            return (await conn.execute(
                select(func.count()).select_from(P)
                .where(P.c.created_by_key == key_id, P.c.status != ProjectStatus.DELETED)
            )).scalar_one()
