"""Re-seal every stored credential with the primary encryption key.

Key rotation: put the new key first in ``TENANTFLOW_ENCRYPTION_KEYS`` (keep the old ones after it),
restart the worker and the API, then run ``python -m tenantflow.rotate_keys``. When it reports no
credential left under an old key, the old keys can be removed from the setting.
"""

from __future__ import annotations

import asyncio

from tenantflow.credentials import CredentialStore
from tenantflow.crypto import Keyring
from tenantflow.db import make_engine
from tenantflow.settings import get_settings


async def rotate() -> int:
    settings = get_settings()
    engine = make_engine(settings.database_url.get_secret_value(), pool_size=1)
    try:
        store = CredentialStore(engine, Keyring(settings.encryption_keys.get_secret_value()))
        return await store.rotate()
    finally:
        await engine.dispose()


def main() -> None:
    moved = asyncio.run(rotate())
    print(f"re-sealed {moved} credential(s) with the primary key")


if __name__ == "__main__":
    main()
