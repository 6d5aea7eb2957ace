"""Envelope-free AES-256-GCM with a keyring, so keys can be rotated.

The keyring setting is ``kid:base64key[,kid:base64key...]``. The first key seals new secrets; every
key opens the secrets it sealed (the ``key_id`` is stored beside the ciphertext). To rotate: put a
new key first, keep the old ones until ``rotate`` has re-sealed everything.
"""

from __future__ import annotations

import base64
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenantflow.errors import ConfigurationError

_KID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
NONCE_BYTES = 12


class DecryptionError(ConfigurationError):
    """Ciphertext could not be opened: unknown key id, wrong key, or tampering."""


def generate_key() -> str:
    """A new base64 key for the keyring setting."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


class Keyring:
    """Seals and opens small secrets with AES-256-GCM; associated data binds them to their owner."""

    def __init__(self, spec: str) -> None:
        self._keys: dict[str, AESGCM] = {}
        self.primary: str = ""
        for entry in (part.strip() for part in spec.split(",")):
            if not entry:
                continue
            kid, sep, b64 = entry.partition(":")
            if not sep or not _KID_RE.fullmatch(kid):
                raise ConfigurationError("encryption key entries must look like 'kid:base64key'")
            try:
                raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
            except ValueError as exc:
                raise ConfigurationError(f"encryption key {kid!r} is not base64") from exc
            if len(raw) != 32:
                raise ConfigurationError(f"encryption key {kid!r} must be 32 bytes")
            if kid in self._keys:
                raise ConfigurationError(f"encryption key id {kid!r} appears twice")
            self._keys[kid] = AESGCM(raw)
            self.primary = self.primary or kid
        if not self._keys:
            raise ConfigurationError("the encryption keyring is empty")

    def seal(self, plaintext: str, *, aad: str) -> tuple[str, bytes]:
        """Encrypt with the primary key; returns ``(key_id, nonce + ciphertext)``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.primary].encrypt(nonce, plaintext.encode(), aad.encode())
        return self.primary, nonce + sealed

    def open(self, key_id: str, blob: bytes, *, aad: str) -> str:
        """Decrypt what ``seal`` produced."""
        key = self._keys.get(key_id)
        if key is None:
            raise DecryptionError(f"no encryption key with id {key_id!r} in the keyring")
        try:
            return key.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode()).decode()
        except InvalidTag as exc:
            raise DecryptionError("ciphertext does not open with its key (tampered?)") from exc
