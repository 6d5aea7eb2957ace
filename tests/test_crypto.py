"""The keyring and the encrypted credential store, with key rotation, on the real mirror database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from activities.deps import Deps
from tenantflow.catalog import PROJECT_STEP_NAMES
from tenantflow.credentials import CredentialStore
from tenantflow.crypto import DecryptionError, Keyring, generate_key
from tenantflow.errors import ConfigurationError, NotReady
from tenantflow.models import Credential

K1, K2 = f"r1:{generate_key()}", f"r2:{generate_key()}"


def test_seal_and_open_round_trip_bound_to_its_owner() -> None:
    ring = Keyring(K1)
    kid, blob = ring.seal("s3cret-value", aad="p:kind")
    assert kid == "r1" and b"s3cret-value" not in blob
    assert ring.open(kid, blob, aad="p:kind") == "s3cret-value"
    with pytest.raises(DecryptionError):
        ring.open(kid, blob, aad="other:kind")  # moved to another tenant: refused
    with pytest.raises(DecryptionError):
        ring.open(kid, blob[:-1] + bytes([blob[-1] ^ 1]), aad="p:kind")  # tampered
    with pytest.raises(DecryptionError):
        ring.open("k9", blob, aad="p:kind")


@pytest.mark.parametrize("spec", ["", "nokid", "k1:not-base64!!", "k1:" + "A" * 10, f"{K1},{K1}"])
def test_bad_keyrings_are_refused(spec: str) -> None:
    with pytest.raises(ConfigurationError):
        Keyring(spec)


async def test_rotation_reseals_everything_with_the_new_primary_key(deps: Deps, tenant_name: Any) -> None:
    pid = (await deps.store.create_project(name=tenant_name(), kind="project",
                                           steps=PROJECT_STEP_NAMES)).project.id
    old = CredentialStore(deps.engine, Keyring(K1))
    await old.put(pid, "jwt_secret", "first-secret-value")
    assert await old.put_if_absent(pid, "jwt_secret", "other") is False

    both = CredentialStore(deps.engine, Keyring(f"{K2},{K1}"))
    assert await both.get(pid, "jwt_secret") == "first-secret-value"  # old key still opens it
    assert await both.rotate(project_id=pid) == 1
    async with deps.engine.connect() as conn:
        kids = (await conn.execute(
            select(Credential.key_id).where(Credential.project_id == pid)  # type: ignore[arg-type]
        )).scalars().all()
    assert set(kids) == {"r2"}
    only_new = CredentialStore(deps.engine, Keyring(K2))
    assert await only_new.get(pid, "jwt_secret") == "first-secret-value"
    with pytest.raises(NotReady):
        await only_new.get(uuid.uuid4(), "jwt_secret")
