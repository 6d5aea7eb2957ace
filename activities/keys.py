"""A tenant's API keys: a JWT secret of its own and two long-lived HS256 JWTs signed with it.

``anon`` is the key a tenant's public clients embed; ``service_role`` is its servers' key. The
platform services (auth, realtime, storage) are registered with all three, so they can check keys
without asking us. Everything is kept encrypted in the credential store; only the references
(``jwt_secret``, ``anon_key``, ``service_role_key``) leave the activity.

Revocation. The keys are JWTs signed with the tenant's secret and nothing keeps a list of them, so
a key cannot be revoked by itself: it stops working when nobody holds the secret that verifies it.
Deprovisioning therefore deregisters the tenant from auth, realtime and storage first (they hold
the secret to check keys) and then deletes the secret and the keys here (``delete_api_keys``).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

from activities.mirror import StepActivities, step
from tenantflow.catalog import StepName
from tenantflow.contracts import StepInput, StepResult
from tenantflow.credentials import CredentialKind
from tenantflow.models import StepStatus

# Credential kinds (the references that leave the activity).
JWT_SECRET = CredentialKind.JWT_SECRET
ANON_KEY = CredentialKind.ANON_KEY
SERVICE_ROLE_KEY = CredentialKind.SERVICE_ROLE_KEY
KEY_KINDS = (JWT_SECRET, ANON_KEY, SERVICE_ROLE_KEY)
# Credential kind → the ``role`` claim of the key stored under it.
API_KEY_ROLES = {ANON_KEY: "anon", SERVICE_ROLE_KEY: "service_role"}
ALGORITHM = "HS256"
_REQUIRED_CLAIMS = ["role", "iss", "ref", "iat", "exp"]


def new_jwt_secret() -> str:
    """48 random bytes, URL-safe: well above the 32 bytes HS256 needs."""
    return secrets.token_urlsafe(48)


def issue_api_key(secret: str, *, role: str, issuer: str, ref: str, ttl_seconds: int) -> str:
    """A signed key for ``role`` of tenant ``ref``, valid for ``ttl_seconds`` from now."""
    now = int(time.time())
    claims = {"role": role, "iss": issuer, "ref": ref, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_api_key(token: str, secret: str, *, issuer: str) -> dict[str, Any]:
    """The claims of a valid key (signature, issuer, expiry, required claims); ``jwt.InvalidTokenError``
    otherwise."""
    return jwt.decode(
        token, secret, algorithms=[ALGORITHM], issuer=issuer, options={"require": _REQUIRED_CLAIMS}
    )


def _still_valid(token: str, secret: str, *, role: str, issuer: str, ref: str) -> bool:
    try:
        claims = decode_api_key(token, secret, issuer=issuer)
    except jwt.InvalidTokenError:
        return False
    return claims.get("role") == role and claims.get("ref") == ref


class KeyActivities(StepActivities):
    @step(StepName.GENERATE_API_KEYS)
    async def generate_api_keys(self, input: StepInput) -> StepResult:
        """Create the tenant's JWT secret once, and its keys unless valid ones are stored already.

        A retry (or a re-run) keeps keys that still verify against the stored secret, so clients
        holding them are not broken; an expired, foreign or tampered key is replaced.
        """
        project = await self.load_project(input)
        creds, settings = self.deps.credentials, self.deps.settings
        secret = await creds.generated(project.id, JWT_SECRET, new_jwt_secret)
        issued: list[str] = []
        for kind, role in API_KEY_ROLES.items():
            stored = await creds.find(project.id, kind)
            if stored is not None and _still_valid(
                stored, secret, role=role, issuer=settings.jwt_issuer, ref=project.name
            ):
                continue
            key = issue_api_key(
                secret, role=role, issuer=settings.jwt_issuer, ref=project.name,
                ttl_seconds=settings.jwt_ttl_seconds,
            )
            await creds.put(project.id, kind, key)
            issued.append(role)
        return StepResult(
            status=StepStatus.SUCCESS,
            credential_refs=[JWT_SECRET, *API_KEY_ROLES],
            details={"issued": issued, "kept": [r for r in API_KEY_ROLES.values() if r not in issued]},
        )

    @step(StepName.DELETE_API_KEYS)
    async def delete_api_keys(self, input: StepInput) -> StepResult:
        """Delete the tenant's JWT secret and its anon and service_role keys.

        This revokes the keys: they are JWTs signed with that secret, and once the services no
        longer hold the secret (the deregistration steps run first) and we no longer hold it,
        nothing verifies them. Keys that are gone already count as deleted.
        """
        project = await self.load_project(input)
        deleted = await self.deps.credentials.delete(project.id, *KEY_KINDS)
        return StepResult(
            status=StepStatus.SUCCESS,
            details={"credentials_deleted": list(KEY_KINDS), "existed": deleted},
        )
