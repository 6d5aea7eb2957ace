"""The encrypted credential store: the only way secrets are written or read.

Activities put a secret here and hand on only its reference (its ``CredentialKind``); whoever needs
the secret later opens it here, inside an activity, a client factory or the API's connection route,
never inside a workflow.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantflow.crypto import Keyring
from tenantflow.errors import NotReady
from tenantflow.models import Credential, utcnow

_T = Credential.__table__  # type: ignore[attr-defined]


class CredentialKind(StrEnum):
    """What a stored secret is (``credentials.kind``). Defined here, below the activities that
    write them and the API that reads them back, so neither has to import the other."""

    DB_PASSWORD = "tenant_db_password"  # the tenant role's Postgres password
    JWT_SECRET = "jwt_secret"  # signs the tenant's API keys
    ANON_KEY = "anon_key"
    SERVICE_ROLE_KEY = "service_role_key"
    GRAPH_PASSWORD = "graph_password"  # the tenant's graph database user


def _aad(project_id: uuid.UUID, kind: str) -> str:
    return f"{project_id}:{kind}"


class CredentialStore:
    def __init__(self, engine: AsyncEngine, keyring: Keyring) -> None:
        self._engine = engine
        self._keyring = keyring

    async def put(self, project_id: uuid.UUID, kind: str, secret: str) -> str:
        """Seal and upsert ``secret``; returns the credential's reference (its kind)."""
        key_id, blob = self._keyring.seal(secret, aad=_aad(project_id, kind))
        stmt = insert(_T).values(
            id=uuid.uuid4(), project_id=project_id, kind=kind, key_id=key_id, ciphertext=blob,
            created_at=utcnow(), updated_at=utcnow(),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[_T.c.project_id, _T.c.kind],
            set_={"key_id": key_id, "ciphertext": blob, "updated_at": utcnow()},
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)
        return kind

    async def put_if_absent(self, project_id: uuid.UUID, kind: str, secret: str) -> bool:
        """Store ``secret`` unless one is stored already; True if this call stored it.

        Used for generated secrets so a retried step keeps the first value it generated.
        """
        key_id, blob = self._keyring.seal(secret, aad=_aad(project_id, kind))
        stmt = (
            insert(_T)
            .values(
                id=uuid.uuid4(), project_id=project_id, kind=kind, key_id=key_id,
                ciphertext=blob, created_at=utcnow(), updated_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=[_T.c.project_id, _T.c.kind])
            .returning(_T.c.id)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def get(self, project_id: uuid.UUID, kind: str) -> str:
        """Open a stored secret; ``NotReady`` if there is none."""
        found = await self.find(project_id, kind)
        if found is None:
            raise NotReady(f"no {kind} credential stored for tenant {project_id}")
        return found

    async def find(self, project_id: uuid.UUID, kind: str) -> str | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(_T.c.key_id, _T.c.ciphertext).where(
                        _T.c.project_id == project_id, _T.c.kind == kind
                    )
                )
            ).first()
        if row is None:
            return None
        return self._keyring.open(row.key_id, row.ciphertext, aad=_aad(project_id, kind))

    async def generated(self, project_id: uuid.UUID, kind: str, make: Callable[[], str]) -> str:
        """The stored secret of ``kind``, generating and storing it with ``make()`` the first time."""
        await self.put_if_absent(project_id, kind, make())
        return await self.get(project_id, kind)

    async def delete(self, project_id: uuid.UUID, *kinds: str) -> int:
        """Delete the tenant's credentials of ``kinds``; returns how many existed.

        Deleting what is not there is not an error: teardown steps repeat this safely.
        """
        if not kinds:
            return 0
        return await self._delete(_T.c.project_id == project_id, _T.c.kind.in_(kinds))

    async def delete_all(self, project_id: uuid.UUID) -> int:
        """Delete every credential of the tenant (the end of its deprovisioning); returns how many."""
        return await self._delete(_T.c.project_id == project_id)

    async def _delete(self, *where: Any) -> int:
        async with self._engine.begin() as conn:
            return len((await conn.execute(delete(_T).where(*where).returning(_T.c.id))).all())

    async def rotate(self, *, project_id: uuid.UUID | None = None) -> int:
        """Re-seal every credential (of one tenant, if given) not sealed with the primary key;
        returns how many."""
        moved = 0
        query = select(_T.c.id, _T.c.project_id, _T.c.kind, _T.c.key_id, _T.c.ciphertext).where(
            _T.c.key_id != self._keyring.primary
        )
        if project_id is not None:
            query = query.where(_T.c.project_id == project_id)
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query.with_for_update())).all()
            for row in rows:
                aad = _aad(row.project_id, row.kind)
                plain = self._keyring.open(row.key_id, row.ciphertext, aad=aad)
                key_id, blob = self._keyring.seal(plain, aad=aad)
                await conn.execute(
                    _T.update()
                    .where(_T.c.id == row.id)
                    .values(key_id=key_id, ciphertext=blob, updated_at=utcnow())
                )
                moved += 1
        return moved
