"""Where a tenant's Postgres database is reached from outside: host, port, database, role, URL.

Shared by the activities (which hand the URL to platform services) and the API (which gives it to
the tenant's owner), so both describe the same address. Host and port are
``tenant_pg_public_host`` / ``_port`` when set, else the admin URL's; database and role follow
from the tenant's name (``tenantflow.names``). The password is not part of the endpoint: the caller
opens it from the credential store and passes it to ``TenantPgEndpoint.url`` only at the moment
it needs the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

from tenantflow.names import tenant_db_name, tenant_role_name
from tenantflow.settings import Settings


@dataclass(frozen=True)
class TenantPgEndpoint:
    """A tenant database's public address and login role (no secret)."""

    host: str
    port: int
    database: str
    user: str

    def url(self, password: str) -> str:
        """``postgresql://user:password@host:port/database``, parts percent-encoded.

        The URL holds the decrypted password: never log it or put it in an error.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        credentials = f"{quote(self.user, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{credentials}@{host}:{self.port}/{self.database}"


def tenant_pg_endpoint(settings: Settings, tenant_name: str) -> TenantPgEndpoint:
    """The public address of the database of the tenant called ``tenant_name``."""
    admin = conninfo_to_dict(settings.tenant_pg_admin_url.get_secret_value())
    return TenantPgEndpoint(
        host=settings.tenant_pg_public_host or str(admin.get("host") or "localhost"),
        port=settings.tenant_pg_public_port or int(admin.get("port") or 5432),
        database=tenant_db_name(tenant_name),
        user=tenant_role_name(tenant_name),
    )
