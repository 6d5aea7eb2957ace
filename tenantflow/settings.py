"""The one place configuration is read from: environment variables prefixed ``TENANTFLOW_``."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache

from pydantic import Field, SecretStr, field_validator, model_validator
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

    model_config = SettingsConfigDict(env_prefix="TENANTFLOW_", env_file=None, extra="ignore", frozen=True)

    environment: Environment = Field(
        default=Environment.DEV,
        description="dev, test or production (production refuses placeholder or short secrets).",
    )

    database_url: SecretStr = Field(
        description="Mirror database (projects, provisioning_steps, credentials): a postgresql:// URL."
    )
    tenant_pg_admin_url: SecretStr = Field(
        description="Admin (superuser) connection to the Postgres cluster that hosts tenant databases."
    )
    tenant_pg_public_host: str = Field(
        default="",
        description="Host tenants and platform services use to reach tenant databases "
        "(empty: the admin URL's host).",
    )
    tenant_pg_public_port: int = Field(
        default=0, ge=0, description="Port for the same (0: the admin URL's port)."
    )
    tenant_pg_connect_timeout: int = Field(
        default=5, ge=1, description="Seconds to wait when connecting to the tenant cluster."
    )

    temporal_address: str = Field(default="127.0.0.1:7233", description="Temporal frontend host:port.")
    temporal_namespace: str = Field(default="default", description="Temporal namespace.")
    task_queue: str = Field(default="tenantflow", description="Task queue of the worker and the runs.")

    api_token: SecretStr = Field(description="Bearer token every API route but health requires.")
    api_page_size_max: int = Field(default=100, ge=1, description="Largest page GET /v1/projects returns.")

    encryption_keys: SecretStr = Field(
        description="Keyring 'kid:base64key[,kid:base64key...]' (32-byte AES keys): the first "
        "encrypts, all decrypt (rotation: python -m tenantflow.rotate_keys)."
    )

    jwt_issuer: str = Field(default="tenantflow", description="iss claim of the tenants' API keys.")
    jwt_ttl_seconds: int = Field(
        default=10 * 365 * 24 * 3600, ge=60, description="Lifetime of the tenants' API keys."
    )

    graph_backend: GraphBackend = Field(
        default=GraphBackend.NONE,
        description="none (graph steps skipped), neo4j (self-managed), aura, or arcadedb.",
    )
    graph_wait_timeout_seconds: float = Field(
        default=300.0, gt=0, description="neo4j/arcadedb: give up waiting for a database after this."
    )
    graph_poll_interval_seconds: float = Field(
        default=1.0, gt=0, description="neo4j/arcadedb: seconds between readiness polls."
    )

    neo4j_uri: str = Field(default="", description="neo4j: Bolt URI of the server (admin access).")
    neo4j_user: str = Field(default="neo4j", description="neo4j: admin user.")
    neo4j_password: SecretStr = Field(default=SecretStr(""), description="neo4j: admin password.")

    arcadedb_http_url: str = Field(
        default="", description="arcadedb: HTTP API URL (databases are created through it)."
    )
    arcadedb_bolt_uri: str = Field(default="", description="arcadedb: Bolt URI (readiness and queries).")
    arcadedb_user: str = Field(default="root", description="arcadedb: server user.")
    arcadedb_password: SecretStr = Field(default=SecretStr(""), description="arcadedb: its password.")

    aura_api_url: str = Field(default="https://api.neo4j.io", description="aura: API base URL.")
    aura_client_id: str = Field(default="", description="aura: API client id.")
    aura_client_secret: SecretStr = Field(default=SecretStr(""), description="aura: API client secret.")
    aura_tenant_id: str = Field(default="", description="aura: the Aura tenant (project) instances go in.")
    aura_region: str = Field(default="europe-west1", description="aura: instance region.")
    aura_version: str = Field(default="5", description="aura: Neo4j version of new instances.")
    aura_memory: str = Field(default="1GB", description="aura: instance memory.")
    aura_type: str = Field(
        default="free-db", description="aura: instance type (free-db, professional-db, ...)."
    )
    aura_cloud_provider: str = Field(default="gcp", description="aura: gcp, aws or azure.")
    aura_poll_interval_seconds: float = Field(
        default=5.0, gt=0, description="aura: seconds between instance status polls."
    )
    aura_poll_timeout_seconds: float = Field(
        default=300.0, gt=0, description="aura: give up waiting for 'running' after this."
    )
    aura_request_timeout_seconds: float = Field(default=30.0, gt=0, description="aura: HTTP timeout.")

    auth_service_url: str = Field(
        default="", description="Auth service admin API base URL (empty: register_auth_service skipped)."
    )
    auth_service_key: SecretStr = Field(default=SecretStr(""), description="Its admin key (Bearer).")
    realtime_service_url: str = Field(
        default="", description="Realtime admin API base URL (empty: register_realtime_service skipped)."
    )
    realtime_service_key: SecretStr = Field(default=SecretStr(""), description="Its admin key (Bearer).")
    storage_service_url: str = Field(
        default="", description="Storage admin API base URL (empty: register_storage_service skipped)."
    )
    storage_service_key: SecretStr = Field(
        default=SecretStr(""), description="Its admin key (apikey header)."
    )
    service_timeout_seconds: float = Field(
        default=10.0, gt=0, description="HTTP timeout of the three services."
    )
    tenant_site_url_template: str = Field(
        default="https://{name}.example.com", description="A tenant's site URL; {name} is the project name."
    )
    realtime_region: str = Field(default="local", description="Region sent in the realtime registration.")

    webhook_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Signup webhook secret: a Bearer token or a Standard Webhooks signing key "
        "(empty: the webhook answers 503).",
    )
    webhook_tolerance_seconds: int = Field(
        default=300, ge=1, description="Oldest/newest signed webhook timestamp accepted."
    )

    step_retry_initial_interval_seconds: float | None = Field(
        default=None, gt=0,
        description="Replaces the step catalog's first retry delay (1 s) for every step (unset: the "
        "catalog's; tests use 0.1).",
    )
    step_outage_budget_seconds: float | None = Field(
        default=None, gt=0,
        description="Replaces how long every step rides out an outage of its backend before it waits "
        "for a person (unset: the catalog's, 10 min; 45 min for the graph wait).",
    )
    step_heartbeat_timeout_seconds: float = Field(
        default=15.0, gt=0, description="A worker that dies mid-step is noticed after this long."
    )

    bulk_retry_batch_size: int = Field(
        default=20, ge=1, description="Bulk retry: runs resumed per batch (POST /v1/projects/retry-failed)."
    )
    bulk_retry_pause_seconds: float = Field(
        default=5.0, ge=0, description="Bulk retry: pause between batches, so a fixed outage is not stormed."
    )

    # Operator console (/console): who may log in, for how long, and where its run links point.
    console_password: SecretStr = Field(
        default=SecretStr(""),
        description="A console login password besides the API token (empty: only the API token logs in).",
    )
    console_session_hours: float = Field(
        default=12.0, gt=0, description="How long a console login lasts before it must log in again."
    )
    temporal_ui_url: str = Field(
        default="http://127.0.0.1:8233",
        description="Temporal Web UI base URL (http or https); the console links every run there.",
    )

    @field_validator("temporal_ui_url")
    @classmethod
    def _web_url(cls, url: str) -> str:
        # It becomes a link in the console: only a web address, never javascript: or data:.
        if not url.startswith(("http://", "https://")):
            raise ValueError("temporal_ui_url must start with http:// or https://")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            for name in ("api_token", "encryption_keys", "webhook_secret"):
                value = getattr(self, name).get_secret_value()
                if value.lower() in PLACEHOLDER_SECRETS or len(value) < 16:
                    raise ValueError(f"{name} must be set to a real secret in production")
            console = self.console_password.get_secret_value()
            if console and (console.lower() in PLACEHOLDER_SECRETS or len(console) < 16):
                raise ValueError("console_password must be empty or a real secret in production")
        backend = self.graph_backend
        if backend is GraphBackend.NEO4J and not self.neo4j_uri:
            raise ValueError("graph_backend=neo4j needs TENANTFLOW_NEO4J_URI")
        if backend is GraphBackend.ARCADEDB and not (self.arcadedb_http_url and self.arcadedb_bolt_uri):
            raise ValueError("graph_backend=arcadedb needs TENANTFLOW_ARCADEDB_HTTP_URL and _BOLT_URI")
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
        if value is None:  # unset optional: leave it unset in the child too
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"{prefix}{name}".upper()] = str(value.value if isinstance(value, StrEnum) else value)
    return env
