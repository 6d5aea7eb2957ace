"""The one place configuration is read from: environment variables prefixed ``TENANTFLOW_``."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "change-me", "secret", "password", "dev", ""}


class GraphBackend(StrEnum):
    """Which graph platform tenants get a database on."""

    NONE = "none"
    NEO4J = "neo4j"
    AURA = "aura"
    ARCADEDB = "arcadedb"


class Environment(StrEnum):
    DEV = "dev"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Every address, port, timeout and secret of tenantflow.

    Required values have no default. Secrets are ``SecretStr`` and never logged.
    """

    model_config = SettingsConfigDict(
        env_prefix="TENANTFLOW_", env_file=None, extra="ignore", frozen=True
    )

    # dev, test or production (production refuses placeholder secrets).
    environment: Environment = Environment.DEV

    # Mirror database (projects, provisioning_steps, credentials). SQLAlchemy URL, psycopg 3 driver.
    database_url: SecretStr
    # Admin connection to the Postgres cluster that hosts tenant databases (libpq URL).
    tenant_pg_admin_url: SecretStr
    # Host/port tenants (and the services registered for them) use to reach their database.
    # Empty: taken from tenant_pg_admin_url.
    tenant_pg_public_host: str = ""
    tenant_pg_public_port: int = 0
    # Seconds to wait when connecting to the tenant cluster.
    tenant_pg_connect_timeout: int = Field(default=5, ge=1)

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "tenantflow"

    # API
    api_token: SecretStr
    api_page_size_max: int = Field(default=100, ge=1)

    # Encryption keyring: "kid:base64-32-byte-key,kid2:..."; the first key encrypts, all decrypt.
    encryption_keys: SecretStr

    # API keys (JWTs) issued per tenant
    jwt_issuer: str = "tenantflow"
    jwt_ttl_seconds: int = Field(default=10 * 365 * 24 * 3600, ge=60)

    # Graph
    graph_backend: GraphBackend = GraphBackend.NONE
    graph_wait_timeout_seconds: float = Field(default=300.0, gt=0)
    graph_poll_interval_seconds: float = Field(default=1.0, gt=0)

    # Neo4j self-managed (graph_backend=neo4j): Bolt URI and the admin account.
    neo4j_uri: str = ""
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr = SecretStr("")

    # ArcadeDB (graph_backend=arcadedb): HTTP API (creates databases), Bolt (queries), root account.
    arcadedb_http_url: str = ""
    arcadedb_bolt_uri: str = ""
    arcadedb_user: str = "root"
    arcadedb_password: SecretStr = SecretStr("")

    # Neo4j Aura (graph_backend=aura): API client credentials, the instance to create, polling.
    aura_api_url: str = "https://api.neo4j.io"
    aura_client_id: str = ""
    aura_client_secret: SecretStr = SecretStr("")
    aura_tenant_id: str = ""
    aura_region: str = "europe-west1"
    aura_version: str = "5"
    aura_memory: str = "1GB"
    aura_type: str = "free-db"
    aura_cloud_provider: str = "gcp"
    aura_poll_interval_seconds: float = Field(default=5.0, gt=0)
    aura_poll_timeout_seconds: float = Field(default=300.0, gt=0)
    aura_request_timeout_seconds: float = Field(default=30.0, gt=0)

    # Platform services (empty URL: the step is skipped)
    auth_service_url: str = ""
    auth_service_key: SecretStr = SecretStr("")
    realtime_service_url: str = ""
    realtime_service_key: SecretStr = SecretStr("")
    storage_service_url: str = ""
    storage_service_key: SecretStr = SecretStr("")
    service_timeout_seconds: float = Field(default=10.0, gt=0)
    tenant_site_url_template: str = "https://{name}.example.com"
    realtime_region: str = "local"

    # Auth service signup webhook
    webhook_secret: SecretStr = SecretStr("")
    webhook_tolerance_seconds: int = Field(default=300, ge=1)

    # Workflow timing (made small in tests)
    step_retry_initial_interval_seconds: float = Field(default=1.0, gt=0)
    # Steps heartbeat automatically; a worker that dies mid-step is noticed after this long.
    step_heartbeat_timeout_seconds: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            for name in ("api_token", "encryption_keys", "webhook_secret"):
                value = getattr(self, name).get_secret_value()
                if value.lower() in PLACEHOLDER_SECRETS or len(value) < 16:
                    raise ValueError(f"{name} must be set to a real secret in production")
        backend = self.graph_backend
        if backend is GraphBackend.NEO4J and not self.neo4j_uri:
            raise ValueError("graph_backend=neo4j needs TENANTFLOW_NEO4J_URI")
        if backend is GraphBackend.ARCADEDB and not (self.arcadedb_http_url and self.arcadedb_bolt_uri):
            raise ValueError(
                "graph_backend=arcadedb needs TENANTFLOW_ARCADEDB_HTTP_URL and _BOLT_URI"
            )
        if backend is GraphBackend.AURA and not (
            self.aura_client_id and self.aura_client_secret.get_secret_value()
        ):
            raise ValueError("graph_backend=aura needs TENANTFLOW_AURA_CLIENT_ID and _SECRET")
        return self


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()  # type: ignore[call-arg]


def to_env(settings: Settings) -> dict[str, str]:
    """The ``TENANTFLOW_*`` environment that reproduces ``settings`` in a child process."""
    prefix = Settings.model_config.get("env_prefix", "")
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"{prefix}{name}".upper()] = str(value.value if isinstance(value, StrEnum) else value)
    return env
