"""Validation of the names that end up in SQL, Cypher and URLs.

Names are validated here *and* quoted where they are used (``psycopg.sql.Identifier``, Cypher
backticks); validation is what lets us promise they never need quoting surprises.
"""

from __future__ import annotations

import re
import uuid

from tenantflow.errors import InvalidName

# A project name becomes part of a Postgres database name (max 63 bytes), a role name, a Neo4j
# database name (3-63 chars, [a-z0-9.-]) and a URL path segment. The intersection of those rules:
PROJECT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,38}[a-z0-9]$")
PROJECT_NAME_RULE = (
    "3-40 characters: lowercase ASCII letters, digits and '-', starting with a letter and "
    "not ending with '-'"
)
RESERVED_NAMES = frozenset(
    {
        "postgres", "template0", "template1", "system", "neo4j", "admin", "root", "public",
        "default", "tenantflow", "temporal", "api", "auth", "realtime", "storage", "www",
        "user", "users", "null", "none", "information-schema",
    }
)

NEO4J_DB_NAME_RE = re.compile(r"^[a-z][a-z0-9.-]{1,61}[a-z0-9]$")

# The one spelling of a UUID we accept from outside: 8-4-4-4-12 hex digits. ``uuid.UUID()`` also
# takes braces, ``urn:uuid:``, no hyphens, and (through ``int(.., 16)``) a sign or full-width
# digits, some of which name a *different* UUID than the text seems to.
CANONICAL_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
CANONICAL_UUID_PATTERN = f"^{CANONICAL_UUID_RE.pattern}$"


def canonical_uuid(text: object) -> uuid.UUID | None:
    """The UUID ``text`` spells in the canonical 36-character form, else None."""
    if isinstance(text, str) and text.isascii() and CANONICAL_UUID_RE.fullmatch(text):
        return uuid.UUID(text)
    return None


def validate_project_name(name: str) -> str:
    """Return ``name`` if it is an acceptable project name, else raise ``InvalidName``."""
    if not isinstance(name, str) or not PROJECT_NAME_RE.fullmatch(name):
        raise InvalidName(f"invalid project name {name!r}: {PROJECT_NAME_RULE}")
    if "--" in name:
        raise InvalidName(f"invalid project name {name!r}: '--' is not allowed")
    if name in RESERVED_NAMES or name.startswith(("pg-", "system")):
        raise InvalidName(f"invalid project name {name!r}: reserved")
    if canonical_uuid(name) is not None:
        raise InvalidName(f"invalid project name {name!r}: a UUID is read as a project id")
    return name


def tenant_db_name(name: str) -> str:
    """Postgres database name of a tenant: ``t_<name with '-' as '_'>``."""
    return "t_" + validate_project_name(name).replace("-", "_")


def tenant_role_name(name: str) -> str:
    """Postgres login role owning the tenant database."""
    return tenant_db_name(name) + "_owner"


def validate_neo4j_database_name(name: str) -> str:
    """Neo4j rules: 3-63 chars, ASCII letter first, ``[a-z0-9.-]``, no ``system``/``_`` prefix."""
    if not NEO4J_DB_NAME_RE.fullmatch(name) or name.startswith("system"):
        raise InvalidName(
            f"invalid graph database name {name!r}: 3-63 chars of [a-z0-9.-], letter first, "
            "not ending with '.' or '-', no 'system' prefix"
        )
    return name


def graph_db_name(name: str) -> str:
    """Graph database name of a tenant (valid for Neo4j and ArcadeDB)."""
    return validate_neo4j_database_name("tf-" + validate_project_name(name))


def user_project_name(user_id: uuid.UUID) -> str:
    """Tenant name of a per-user tenant: ``u-`` + the user id's 32 hex digits."""
    return "u-" + user_id.hex


def quote_cypher_name(name: str) -> str:
    """Backtick-quote a validated Neo4j name (backticks inside are doubled, as Cypher requires)."""
    return "`" + name.replace("`", "``") + "`"
