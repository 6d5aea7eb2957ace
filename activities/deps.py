"""What activities share in one worker process: settings, the mirror store, the credential store."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from tenantflow.credentials import CredentialStore
from tenantflow.crypto import Keyring
from tenantflow.db import make_engine
from tenantflow.settings import Settings
from tenantflow.store import Store


@dataclass
class Deps:
    settings: Settings
    engine: AsyncEngine
    store: Store
    credentials: CredentialStore

    @classmethod
    def from_settings(cls, settings: Settings) -> Deps:
        engine = make_engine(settings.database_url.get_secret_value(), pool_size=10)
        keyring = Keyring(settings.encryption_keys.get_secret_value())
        return cls(settings, engine, Store(engine), CredentialStore(engine, keyring))

    async def aclose(self) -> None:
        await self.engine.dispose()
