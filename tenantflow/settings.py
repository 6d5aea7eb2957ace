"""The one place configuration is read from: environment variables prefixed ``TENANTFLOW_``."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tenantflow.standard_webhooks import MIN_SECRET_BYTES, decode_secret

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

    # hide_input_in_errors: a validation error never quotes what was given (it may be a secret).
    model_config = SettingsConfigDict(
        env_prefix="TENANTFLOW_", env_file=None, extra="ignore", frozen=True, hide_input_in_errors=True
    )

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
    api_key_creates_per_minute: int = Field(
        default=60, ge=1, description="Tenants one API key may create per minute (429 beyond).",
    )
    api_key_max_tenants: int = Field(
        default=1000, ge=0, description="Live tenants one API key may hold (403 beyond; 0: no cap).",
    )
    platform_jwt_secret: SecretStr = Field(
        default=SecretStr(""),
        description="The auth service's JWT secret (HS256): a user's own token may read "
        "GET /v1/users/{id}/status when its sub is that id (empty: only API keys).",
    )
    api_max_body_bytes: int = Field(
        default=1_048_576, ge=1024,
        description="Largest request body the API reads (413 above it, before auth or parsing).",
    )
    api_db_connections: int = Field(
        default=10, ge=1,
        description="Mirror connections each API process keeps open, about the requests it serves at "
        "once: the status reads' pool and the other routes' engine keep this many each (opened as "
        "needed); beyond it a request opens one of its own (a status read after waiting 1 s).",
    )

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
    aura_rate_limit_requests: int = Field(
        default=125, ge=1,
        description="aura: API requests the account allows per window, polling included (125 on paid "
        "tiers, 25 on Free and trials); every worker shares this budget.",
    )
    aura_rate_limit_window_seconds: float = Field(
        default=60.0, gt=0, description="aura: the rate limit's window."
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

    # Completion webhooks: events tenantflow SENDS (the signup webhook above is one it receives).
    event_webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Receivers of the completion events (tenant.online, tenant.failed, tenant.deleted): "
        "http(s) URLs, comma-separated; not secrets (they are in Temporal history; the signature "
        "authenticates). Empty: no events. A run sends to the URLs set when it started.",
    )
    event_webhook_secret: SecretStr = Field(
        default=SecretStr(""),
        description="Standard Webhooks signing secret of the completion events, whsec_<base64> "
        "(required with event_webhook_urls; at least 24 bytes in production).",
    )

    @field_validator("event_webhook_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):  # the environment's form: "https://a/hook,https://b/hook"
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("event_webhook_urls")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"event webhook URL {url!r} is not an http(s) URL with a host")
            if parts.username or parts.password:
                raise ValueError(f"event webhook URL {url!r} carries credentials; they would end up "
                                 "in Temporal history (the signature is the authentication)")
        if len(set(urls)) != len(urls):
            raise ValueError("an event webhook URL is listed twice (it would get every event twice)")
        return urls

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

    reconcile_interval_seconds: float = Field(
        default=30.0, gt=0,
        description="How often each worker looks for tenants whose run was never started.",
    )
    reconcile_after_seconds: float = Field(
        default=20.0, ge=0,
        description="How long a tenant stays pending/deprovisioning before the reconciler checks its run.",
    )
    max_runs_in_flight: int = Field(
        default=16, ge=0,
        description="Provisioning runs going on at once, across every API process and worker; more "
        "new tenants wait (pending) and are let in oldest first as runs end (0: no cap).",
    )
    admission_interval_seconds: float = Field(
        default=0.5, gt=0,
        description="How often each worker lets waiting tenants in, when a run has ended.",
    )
    bulk_retry_batch_size: int = Field(
        default=20, ge=1, description="Bulk retry: runs resumed per batch (POST /v1/projects/retry-failed)."
    )
    bulk_retry_pause_seconds: float = Field(
        default=5.0, ge=0, description="Bulk retry: pause between batches, so a fixed outage is not stormed."
    )

    # Metrics and traces (README "Metrics and traces"): all off or unchanged by default.
    metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description="A second Bearer token that opens GET /metrics and nothing else, for Prometheus "
        "(empty: /metrics takes the API token only).",
    )
    worker_metrics_address: str = Field(
        default="",
        description="host:port where the worker serves the Temporal SDK's metrics at /metrics "
        "(Prometheus text; empty: not served).",
    )
    otel_exporter_otlp_endpoint: str = Field(
        default="",
        description="OTLP/HTTP collector base URL, e.g. http://127.0.0.1:4318: the API and the worker "
        "send workflow and activity spans to <url>/v1/traces (empty: no tracing).",
    )
    otel_exporter_otlp_headers: SecretStr = Field(
        default=SecretStr(""),
        description="Headers sent with every span export, 'key=value[,key=value...]' (values "
        "URL-encoded), e.g. the collector's API key (empty: none).",
    )
    otel_service_name: str = Field(
        default="tenantflow", min_length=1, description="service.name of the spans sent."
    )

    @field_validator("worker_metrics_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:9464, 0.0.0.0:9464)")
        return value

    @field_validator("otel_exporter_otlp_endpoint")
    @classmethod
    def _collector_url(cls, value: str) -> str:
        if value:
            url = urlsplit(value)
            if url.username or url.password:  # it is logged: credentials go in headers
                raise ValueError("the collector URL must not hold credentials: set them in "
                                 "TENANTFLOW_OTEL_EXPORTER_OTLP_HEADERS")
            if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
                raise ValueError(f"{value!r} is not an http(s):// collector base URL "
                                 "(e.g. http://127.0.0.1:4318)")
        return value.rstrip("/")

    @field_validator("otel_exporter_otlp_headers")
    @classmethod
    def _headers(cls, value: SecretStr) -> SecretStr:
        otlp_headers(value)  # its message names an entry's position, never a value
        return value

    @model_validator(mode="after")
    def _check_metrics_token(self) -> Settings:
        token = self.metrics_token.get_secret_value()
        if token and self.environment is Environment.PRODUCTION and (
            token.lower() in PLACEHOLDER_SECRETS or len(token) < 16
        ):
            raise ValueError("metrics_token must be empty or a real secret in production")
        return self

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
    def _check_console_password(self) -> Settings:
        password = self.console_password.get_secret_value()
        if password and self.environment is Environment.PRODUCTION and (
            password.lower() in PLACEHOLDER_SECRETS or len(password) < 16
        ):
            raise ValueError("console_password must be empty or a real secret in production")
        return self

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            for name in ("api_token", "encryption_keys", "webhook_secret"):
                value = getattr(self, name).get_secret_value()
                if value.lower() in PLACEHOLDER_SECRETS or len(value) < 16:
                    raise ValueError(f"{name} must be set to a real secret in production")
        self._check_event_webhooks()
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

    def _check_event_webhooks(self) -> None:
        secret = self.event_webhook_secret.get_secret_value()
        if self.event_webhook_urls and not secret:
            raise ValueError("event_webhook_urls needs TENANTFLOW_EVENT_WEBHOOK_SECRET (whsec_<base64>)")
        if not secret:
            return
        try:
            key = decode_secret(secret)
        except ValueError as exc:
            raise ValueError(f"event_webhook_secret {exc}") from None
        # Placeholders written as whsec_ are short ("whsec_changeme") or one byte repeated ("AAAA...").
        if self.environment is Environment.PRODUCTION and (len(key) < MIN_SECRET_BYTES or len(set(key)) == 1):
            raise ValueError(f"event_webhook_secret must be a real secret of at least {MIN_SECRET_BYTES} "
                             "random bytes in production")


def otlp_headers(value: SecretStr) -> dict[str, str]:
    """``otel_exporter_otlp_headers`` as a dict (the OTLP exporters' ``key=value,...`` format).

    Raises:
        ValueError: an entry without ``=`` or a name (the message never holds a value).
    """
    headers: dict[str, str] = {}
    for i, entry in enumerate(filter(None, (e.strip() for e in value.get_secret_value().split(","))), 1):
        key, eq, raw = entry.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"header {i} is not key=value")
        headers[key.strip()] = unquote(raw.strip())
    return headers


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
        if isinstance(value, list):  # the environment's comma-separated form
            value = ",".join(value)
        env[f"{prefix}{name}".upper()] = str(value.value if isinstance(value, StrEnum) else value)
    return env
