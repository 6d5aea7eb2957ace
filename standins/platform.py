"""Stand-in for the platform services' admin APIs (auth, realtime, storage): ONE FastAPI app.

Each service lives under its own prefix, so one process on one port serves all three; point the
settings at the prefixes::

    TENANTFLOW_AUTH_SERVICE_URL=http://127.0.0.1:PORT/auth          Authorization: Bearer <auth key>
    TENANTFLOW_REALTIME_SERVICE_URL=http://127.0.0.1:PORT/realtime  Authorization: Bearer <realtime key>
    TENANTFLOW_STORAGE_SERVICE_URL=http://127.0.0.1:PORT/storage    apikey: <storage key>

Routes (the contracts are documented in ``activities.auth_service``, ``activities.realtime_service``,
``activities.storage_service``)::

    PUT  /auth/admin/tenants/{id}          GET /auth/admin/tenants/{id}     GET .../{id}/health (apikey)
    DELETE /auth/admin/tenants/{id}
    GET  /realtime/api/tenants/{id}        POST /realtime/api/tenants       PUT /realtime/api/tenants/{id}
    GET  /realtime/api/tenants/{id}/health DELETE /realtime/api/tenants/{id}
    PUT  /storage/tenants/{id}             GET /storage/tenants/{id}        GET /storage/tenants/{id}/health
    DELETE /storage/tenants/{id}

Every DELETE answers 204 when it deleted the registration and 404 (in the service's error shape)
when there was none; the row is gone from the table, so ``GET /_registrations`` no longer lists it.
Faults hit DELETEs like any other write.

Registrations persist in Postgres, table ``standin_registrations`` (PK ``(service, tenant_id)``,
created at startup); bodies are stored as received, secrets included: it is a stand-in. Health
endpoints really connect to the registered tenant database (realtime, storage) or verify the
tenant's API key with the registered JWT secret (auth).

Test and demo controls (no credentials needed)::

    POST   /_faults         {"service": "auth"|"realtime"|"storage"|"*", "kind": ..., "status": 503,
                             "count": 1, "delay_seconds": null, "phase": "before"|"after",
                             "match": "any"|"read"|"write", "message": "..."}
    GET    /_faults         the faults still armed        DELETE /_faults[?service=auth]  disarm
    GET    /_registrations[?service=&tenant_id=]          every stored registration, bodies included
    PATCH  /_registrations/{service}/{tenant_id}          merge JSON into a stored body (tampering)
    DELETE /_registrations/{service}/{tenant_id}          forget a registration

Fault kinds: ``status`` answers ``status``; ``timeout`` hangs (``delay_seconds``, default an hour,
ends early when the client hangs up) then answers 504; ``slow`` waits ``delay_seconds`` (default 1)
then serves normally; ``duplicate_409`` performs the write and then answers 409 "already taken", as
if an earlier attempt had created the tenant. ``phase: "after"`` applies a fault only once the real
handler has succeeded: the registration is stored, then the caller sees a 500 or a hang — a crash
after the call. ``count`` is how many requests the fault hits (0: until disarmed). Faults can also be
given at start-up (``create_app(faults=...)``, ``--fault JSON``).

Run it for the dev stack::

    STANDINS_DATABASE_URL=postgresql://user:pw@127.0.0.1:5432/standins python -m standins.platform \\
        --port 8090 [--fault '{"service": "storage", ...}']

The database URL and the admin keys come from the environment (``--database-url`` and ``--*-key``
exist, but a secret on a command line is visible to every user in ``ps``): the admin keys from
``TENANTFLOW_{AUTH,REALTIME,STORAGE}_SERVICE_KEY`` (what the worker sends), else ``AdminKeys()``'s.

Demo a failure and a retry with curl::

    curl -X POST localhost:8090/_faults -H 'content-type: application/json' \\
        -d '{"service":"storage","kind":"status","status":503,"count":0}'
    # ... the storage step fails and retries; then
    curl -X DELETE localhost:8090/_faults
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import jwt
import psycopg
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

SERVICES = ("auth", "realtime", "storage")
_TENANT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HEALTH_CONNECT_TIMEOUT = 3
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class AdminKeys:
    """The admin credential each service expects."""

    auth: str = "standin-auth-admin-key"
    realtime: str = "standin-realtime-admin-key"
    storage: str = "standin-storage-admin-key"


class StandinError(Exception):
    """An error response in the answering service's own JSON shape."""

    def __init__(self, status: int, body: dict[str, Any] | None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


# ------------------------------------------------------------------------------------------- faults
class Fault(BaseModel):
    """A failure to inject into the next ``count`` matching requests."""

    service: Literal["auth", "realtime", "storage", "*"] = "*"
    kind: Literal["status", "timeout", "slow", "duplicate_409"]
    status: int = Field(default=503, ge=400, le=599)
    count: int = Field(default=1, ge=0, description="requests to hit; 0 = until disarmed")
    delay_seconds: float | None = Field(default=None, ge=0)
    phase: Literal["before", "after"] = "before"
    match: Literal["any", "read", "write"] = "any"
    message: str = "injected fault"

    def normalised(self) -> Fault:
        if self.kind == "duplicate_409":
            return self.model_copy(update={"status": 409, "phase": "after", "match": "write"})
        return self

    def hits(self, service: str, method: str) -> bool:
        kind = "read" if method in ("GET", "HEAD") else "write"
        return self.service in ("*", service) and self.match in ("any", kind)

    def body(self) -> dict[str, Any]:
        if self.kind == "duplicate_409":
            return {"errors": {"external_id": ["has already been taken"]},
                    "message": "tenant already exists"}
        return {"message": self.message, "error": self.message, "statusCode": str(self.status)}


class FaultBook:
    """The armed faults, in arrival order. Touched only from the server's event loop."""

    def __init__(self, faults: Iterable[Fault | dict[str, Any]] = ()) -> None:
        self._armed: list[tuple[Fault, int | None]] = []
        for fault in faults:
            self.arm(fault if isinstance(fault, Fault) else Fault.model_validate(fault))

    def arm(self, fault: Fault) -> Fault:
        fault = fault.normalised()
        self._armed.append((fault, fault.count or None))
        return fault

    def disarm(self, service: str | None = None) -> int:
        before = len(self._armed)
        self._armed = [(f, n) for f, n in self._armed if service not in (None, f.service)]
        return before - len(self._armed)

    def take(self, service: str, method: str) -> Fault | None:
        """The first armed fault hitting this request, using up one of its hits."""
        for i, (fault, left) in enumerate(self._armed):
            if fault.hits(service, method):
                if left is not None:
                    if left <= 1:
                        del self._armed[i]
                    else:
                        self._armed[i] = (fault, left - 1)
                return fault
        return None

    def listing(self) -> list[dict[str, Any]]:
        return [{**f.model_dump(), "remaining": n} for f, n in self._armed]


class _Held:
    """An ASGI ``send`` that holds the response back instead of sending it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        self.messages.append(message)

    async def replay(self, send: Send) -> None:
        for message in self.messages:
            await send(message)


async def _respond(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def _hang(receive: Receive, seconds: float) -> None:
    """Wait ``seconds``, or until the client hangs up (so a server shutdown is never held up)."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected(), seconds)


class FaultInjection:
    """ASGI middleware applying the ``FaultBook`` to requests under the service prefixes."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], book: FaultBook) -> None:
        self.app = app
        self.book = book

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = scope["path"].strip("/").split("/", 1)[0] if scope["type"] == "http" else ""
        fault = self.book.take(service, scope["method"]) if service in SERVICES else None
        if fault is None:
            await self.app(scope, receive, send)
            return
        proceed: Callable[[], Awaitable[None]]
        if fault.phase == "after":
            held = _Held()
            await self.app(scope, receive, held)
            if held.status >= 400:  # the handler refused: nothing was written, nothing to fake
                await held.replay(send)
                return
            proceed = functools.partial(held.replay, send)
        else:
            proceed = functools.partial(self.app, scope, receive, send)
        await self._inject(fault, receive, send, proceed)

    @staticmethod
    async def _inject(
        fault: Fault, receive: Receive, send: Send, proceed: Callable[[], Awaitable[None]]
    ) -> None:
        delay = fault.delay_seconds
        if fault.kind == "slow":
            await asyncio.sleep(1.0 if delay is None else delay)
            await proceed()
        elif fault.kind == "timeout":
            await _hang(receive, 3600.0 if delay is None else delay)
            await _respond(send, 504, {"message": "injected timeout", "statusCode": "504"})
        else:
            await _respond(send, fault.status, fault.body())


# ------------------------------------------------------------------------------------ persistence
_SCHEMA = """
CREATE TABLE IF NOT EXISTS standin_registrations (
    service         text        NOT NULL,
    tenant_id       text        NOT NULL,
    body            jsonb       NOT NULL,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, tenant_id)
)
"""
_SCHEMA_LOCK = 0x7374_616E_6469  # several stand-ins may start at once on one database


class Registry:
    """``standin_registrations``: one row per (service, tenant)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def create_table(self) -> None:
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await conn.execute(_SCHEMA)

    async def get(self, service: str, tenant_id: str) -> dict[str, Any] | None:
        rows = await self.find(service=service, tenant_id=tenant_id)
        return rows[0] if rows else None

    async def find(self, *, service: str | None = None, tenant_id: str | None = None) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.cursor(row_factory=dict_row).execute(
                "SELECT service, tenant_id, body, idempotency_key, created_at, updated_at"
                " FROM standin_registrations"
                " WHERE (%(s)s::text IS NULL OR service = %(s)s)"
                " AND (%(t)s::text IS NULL OR tenant_id = %(t)s) ORDER BY service, tenant_id",
                {"s": service, "t": tenant_id},
            )
            return await cur.fetchall()

    async def upsert(self, service: str, tenant_id: str, body: dict[str, Any], key: str | None) -> bool:
        """Insert or replace; True if the row is new."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO standin_registrations (service, tenant_id, body, idempotency_key)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (service, tenant_id) DO UPDATE"
                " SET body = EXCLUDED.body, idempotency_key = EXCLUDED.idempotency_key,"
                " updated_at = now() RETURNING (xmax = 0)",
                (service, tenant_id, Jsonb(body), key),
            )
            row = await cur.fetchone()
            return bool(row and row[0])

    async def insert(self, service: str, tenant_id: str, body: dict[str, Any], key: str | None) -> bool:
        """Insert unless present; True if inserted."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO standin_registrations (service, tenant_id, body, idempotency_key)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (service, tenant_id, Jsonb(body), key),
            )
            return await cur.fetchone() is not None

    async def patch(self, service: str, tenant_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        row = await self.get(service, tenant_id)
        if row is None:
            return None
        await self.upsert(service, tenant_id, _merge(row["body"], changes), row["idempotency_key"])
        return await self.get(service, tenant_id)

    async def delete(self, service: str, tenant_id: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM standin_registrations WHERE service = %s AND tenant_id = %s",
                (service, tenant_id),
            )
            return cur.rowcount > 0


def _merge(base: Any, changes: Any) -> Any:
    """JSON merge: objects merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(changes, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in changes.items()}}
    return changes


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _sha256(value: Any) -> str | None:
    return hashlib.sha256(value.encode()).hexdigest() if isinstance(value, str) else None


def _dsn_parts(dsn: Any) -> dict[str, Any]:
    try:
        return conninfo_to_dict(dsn) if isinstance(dsn, str) and dsn else {}
    except psycopg.Error:
        return {}


async def _database_answers(conninfo: str) -> bool:
    """Can the service log in to the tenant database with what it was given?"""
    try:
        async with await psycopg.AsyncConnection.connect(
            conninfo, connect_timeout=HEALTH_CONNECT_TIMEOUT
        ) as conn:
            await conn.execute("SELECT 1")
        return True
    except (psycopg.Error, OSError):
        return False


# ----------------------------------------------------------------------------------------- helpers
def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _tenant(tenant_id: str, error: Callable[[str], dict[str, Any]]) -> str:
    if not _TENANT_ID_RE.fullmatch(tenant_id):
        raise StandinError(400, error(f"invalid tenant id {tenant_id!r}"))
    return tenant_id


async def _json_object(request: Request, error: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise StandinError(400, error("body is not JSON")) from None
    if not isinstance(body, dict):
        raise StandinError(400, error("body must be a JSON object"))
    return body


def _missing(body: dict[str, Any], fields: Iterable[str]) -> list[str]:
    return [f for f in fields if not isinstance(body.get(f), str) or not body[f]]


def _admin(service: str, header: str, error: dict[str, Any], status: int) -> Callable[[Request], None]:
    """A dependency checking the service's admin credential header."""

    def check(request: Request) -> None:
        keys: AdminKeys = request.app.state.keys
        expected = getattr(keys, service)
        given = request.headers.get(header, "")
        if header == "authorization":
            given = given.removeprefix("Bearer ").strip()
        if given != expected:
            raise StandinError(status, error)

    return check


def _idempotency(request: Request) -> str | None:
    return request.headers.get("idempotency-key")


# -------------------------------------------------------------------------------------------- auth
def _auth_error(message: str) -> dict[str, Any]:
    return {"message": message}


def _auth_view(row: dict[str, Any]) -> dict[str, Any]:
    body, db = row["body"], _dsn_parts(row["body"].get("database_url"))
    return {
        "tenant_id": row["tenant_id"],
        "name": body.get("name"),
        "site_url": body.get("site_url"),
        "jwt_exp": body.get("jwt_exp"),
        "uri_allow_list": body.get("uri_allow_list") or [],
        "database": {
            "host": db.get("host"), "port": int(db["port"]) if db.get("port") else None,
            "dbname": db.get("dbname"), "user": db.get("user"),
            "password_sha256": _sha256(db.get("password")),
        },
        "jwt_secret_sha256": _sha256(body.get("jwt_secret")),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def auth_router() -> APIRouter:
    admin = APIRouter(dependencies=[Depends(_admin("auth", "authorization",
                                                   _auth_error("invalid admin credentials"), 401))])
    public = APIRouter()

    @admin.put("/admin/tenants/{tenant_id}")
    async def put_tenant(tenant_id: str, request: Request) -> JSONResponse:
        _tenant(tenant_id, _auth_error)
        body = await _json_object(request, _auth_error)
        missing = _missing(body, ("site_url", "jwt_secret", "database_url"))
        if missing:
            raise StandinError(400, _auth_error(f"missing or empty field(s): {', '.join(missing)}"))
        registry = _registry(request)
        created = await registry.upsert("auth", tenant_id, body, _idempotency(request))
        row = await registry.get("auth", tenant_id)
        assert row is not None
        return JSONResponse(_auth_view(row), status_code=201 if created else 200)

    @admin.get("/admin/tenants/{tenant_id}")
    async def get_tenant(tenant_id: str, request: Request) -> JSONResponse:
        row = await _registry(request).get("auth", tenant_id)
        if row is None:
            raise StandinError(404, _auth_error("tenant not found"))
        return JSONResponse(_auth_view(row))

    @admin.delete("/admin/tenants/{tenant_id}")
    async def delete_tenant(tenant_id: str, request: Request) -> Response:
        if not await _registry(request).delete("auth", tenant_id):
            raise StandinError(404, _auth_error("tenant not found"))
        return Response(status_code=204)

    @public.get("/admin/tenants/{tenant_id}/health")
    async def health(tenant_id: str, request: Request) -> JSONResponse:
        row = await _registry(request).get("auth", tenant_id)
        if row is None:
            raise StandinError(404, _auth_error("tenant not found"))
        try:
            claims = jwt.decode(
                request.headers.get("apikey", ""), row["body"].get("jwt_secret", ""),
                algorithms=["HS256", "HS384", "HS512"], options={"verify_aud": False},
            )
        except jwt.InvalidTokenError:
            raise StandinError(401, _auth_error("invalid api key")) from None
        if claims.get("ref", tenant_id) != tenant_id:
            raise StandinError(401, _auth_error("api key belongs to another tenant"))
        return JSONResponse({"healthy": True, "role": claims.get("role")})

    router = APIRouter(prefix="/auth", tags=["auth"])
    router.include_router(admin)
    router.include_router(public)
    return router


# ---------------------------------------------------------------------------------------- realtime
_REALTIME_REQUIRED = ("db_host", "db_name", "db_user", "db_password", "db_port", "region")


def _realtime_error(message: str) -> dict[str, Any]:
    return {"error": message}


def _realtime_tenant(body: dict[str, Any], external_id: str | None = None) -> dict[str, Any]:
    """Validate a ``{"tenant": {...}}`` body like Realtime's changeset does (422 with field errors)."""
    tenant = body.get("tenant")
    if not isinstance(tenant, dict):
        raise StandinError(422, {"errors": {"tenant": ["is required"]}})
    if external_id is not None:
        tenant = {**tenant, "external_id": external_id}
    errors: dict[str, list[str]] = {}
    for field in ("external_id", "jwt_secret"):
        if not isinstance(tenant.get(field), str) or not tenant[field]:
            errors[field] = ["can't be blank"]
    extensions = tenant.get("extensions")
    if not isinstance(extensions, list) or not extensions:
        errors["extensions"] = ["can't be blank"]
    else:
        for ext in extensions:
            settings = ext.get("settings") if isinstance(ext, dict) else None
            if not isinstance(settings, dict):
                errors["extensions"] = ["settings are required"]
                continue
            missing = [k for k in _REALTIME_REQUIRED if settings.get(k) in (None, "")]
            if missing:
                errors["extensions"] = [f"{k} can't be blank" for k in missing]
    if not errors and not _TENANT_ID_RE.fullmatch(tenant["external_id"]):
        errors["external_id"] = ["has invalid format"]
    if errors:
        raise StandinError(422, {"errors": errors})
    return tenant


def _realtime_view(row: dict[str, Any]) -> dict[str, Any]:
    tenant = row["body"]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"realtime:{row['tenant_id']}")),
        "external_id": tenant.get("external_id"),
        "name": tenant.get("name"),
        "max_concurrent_users": tenant.get("max_concurrent_users", 200),
        "inserted_at": row["created_at"].isoformat(),
        "extensions": [
            {"type": e.get("type"),
             "settings": {k: v for k, v in (e.get("settings") or {}).items() if k != "db_password"}}
            for e in tenant.get("extensions") or [] if isinstance(e, dict)
        ],
    }


def realtime_router() -> APIRouter:
    router = APIRouter(
        prefix="/realtime", tags=["realtime"],
        dependencies=[Depends(_admin("realtime", "authorization", {"message": "Forbidden"}, 403))],
    )

    @router.get("/api/tenants/{tenant_id}")
    async def get_tenant(tenant_id: str, request: Request) -> JSONResponse:
        row = await _registry(request).get("realtime", tenant_id)
        if row is None:
            raise StandinError(404, _realtime_error("not found"))
        return JSONResponse({"data": _realtime_view(row)})

    @router.post("/api/tenants")
    async def create_tenant(request: Request) -> JSONResponse:
        tenant = _realtime_tenant(await _json_object(request, _realtime_error))
        registry = _registry(request)
        if not await registry.insert("realtime", tenant["external_id"], tenant, _idempotency(request)):
            raise StandinError(409, {"errors": {"external_id": ["has already been taken"]}})
        row = await registry.get("realtime", tenant["external_id"])
        assert row is not None
        return JSONResponse({"data": _realtime_view(row)}, status_code=201)

    @router.put("/api/tenants/{tenant_id}")
    async def put_tenant(tenant_id: str, request: Request) -> JSONResponse:
        _tenant(tenant_id, _realtime_error)
        tenant = _realtime_tenant(await _json_object(request, _realtime_error), tenant_id)
        registry = _registry(request)
        created = await registry.upsert("realtime", tenant_id, tenant, _idempotency(request))
        row = await registry.get("realtime", tenant_id)
        assert row is not None
        return JSONResponse({"data": _realtime_view(row)}, status_code=201 if created else 200)

    @router.delete("/api/tenants/{tenant_id}")
    async def delete_tenant(tenant_id: str, request: Request) -> Response:
        if not await _registry(request).delete("realtime", tenant_id):
            raise StandinError(404, _realtime_error("not found"))
        return Response(status_code=204)

    @router.get("/api/tenants/{tenant_id}/health")
    async def health(tenant_id: str, request: Request) -> JSONResponse:
        row = await _registry(request).get("realtime", tenant_id)
        if row is None:
            raise StandinError(404, _realtime_error("not found"))
        ext = next((e for e in row["body"].get("extensions") or [] if isinstance(e, dict)), {})
        s = ext.get("settings") or {}
        connected = not request.app.state.check_databases or await _database_answers(make_conninfo(
            host=s.get("db_host"), port=s.get("db_port"), dbname=s.get("db_name"),
            user=s.get("db_user"), password=s.get("db_password"),
        ))
        region = s.get("region")
        return JSONResponse({"data": {"healthy": connected, "db_connected": connected,
                                      "connected_cluster": 0, "region": region}})

    return router


# ----------------------------------------------------------------------------------------- storage
_STORAGE_REQUIRED = ("anonKey", "databaseUrl", "jwtSecret", "serviceKey")


def _storage_error(message: str, status: int = 400) -> dict[str, Any]:
    return {"statusCode": str(status), "error": "Bad Request", "message": message}


def _storage_view(row: dict[str, Any]) -> dict[str, Any]:
    body = row["body"]
    return {
        "anonKey": body.get("anonKey"),
        "databaseUrl": body.get("databaseUrl"),
        "databasePoolUrl": body.get("databasePoolUrl"),
        "maxConnections": body.get("maxConnections"),
        "fileSizeLimit": body.get("fileSizeLimit", 50 * 1024 * 1024),
        "jwtSecret": body.get("jwtSecret"),
        "jwks": body.get("jwks"),
        "serviceKey": body.get("serviceKey"),
        "features": body.get("features") or {"imageTransformation": {"enabled": False}},
        "migrationVersion": "standin",
        "migrationStatus": "COMPLETED",
    }


def storage_router() -> APIRouter:
    router = APIRouter(
        prefix="/storage", tags=["storage"],
        dependencies=[Depends(_admin("storage", "apikey", {"statusCode": "401", "error": "Unauthorized",
                                                           "message": "Invalid API Key"}, 401))],
    )

    @router.put("/tenants/{tenant_id}")
    async def put_tenant(tenant_id: str, request: Request) -> Response:
        _tenant(tenant_id, _storage_error)
        body = await _json_object(request, _storage_error)
        missing = _missing(body, _STORAGE_REQUIRED)
        if missing:
            raise StandinError(400, _storage_error(f"body must have required property '{missing[0]}'"))
        await _registry(request).upsert("storage", tenant_id, body, _idempotency(request))
        return Response(status_code=204)

    @router.get("/tenants/{tenant_id}")
    async def get_tenant(tenant_id: str, request: Request) -> Response:
        row = await _registry(request).get("storage", tenant_id)
        if row is None:
            return Response(status_code=404)
        return JSONResponse(_storage_view(row))

    @router.delete("/tenants/{tenant_id}")
    async def delete_tenant(tenant_id: str, request: Request) -> Response:
        if not await _registry(request).delete("storage", tenant_id):
            return Response(status_code=404)
        return Response(status_code=204)

    @router.get("/tenants/{tenant_id}/health")
    async def health(tenant_id: str, request: Request) -> Response:
        row = await _registry(request).get("storage", tenant_id)
        if row is None:
            return JSONResponse({"error": "Tenant not found"}, status_code=404)
        url = row["body"].get("databaseUrl")
        healthy = not request.app.state.check_databases or (
            bool(_dsn_parts(url)) and await _database_answers(url)
        )
        return JSONResponse({"healthy": healthy})

    return router


# ---------------------------------------------------------------------------------------- controls
def control_router() -> APIRouter:
    router = APIRouter(tags=["stand-in controls"])

    @router.post("/_faults", status_code=201)
    async def arm(fault: Fault, request: Request) -> dict[str, Any]:
        book: FaultBook = request.app.state.faults
        armed = book.arm(fault)
        return {"armed": armed.model_dump(), "faults": book.listing()}

    @router.get("/_faults")
    async def faults(request: Request) -> dict[str, Any]:
        return {"faults": request.app.state.faults.listing()}

    @router.delete("/_faults")
    async def disarm(request: Request, service: str | None = None) -> dict[str, Any]:
        return {"removed": request.app.state.faults.disarm(service)}

    @router.get("/_registrations")
    async def registrations(
        request: Request, service: str | None = None, tenant_id: str | None = None
    ) -> dict[str, Any]:
        rows = await _registry(request).find(service=service, tenant_id=tenant_id)
        return {"registrations": [_jsonable(r) for r in rows]}

    @router.patch("/_registrations/{service}/{tenant_id}")
    async def tamper(service: str, tenant_id: str, request: Request) -> dict[str, Any]:
        changes = await _json_object(request, _auth_error)
        row = await _registry(request).patch(service, tenant_id, changes)
        if row is None:
            raise StandinError(404, {"message": "no such registration"})
        return _jsonable(row)

    @router.delete("/_registrations/{service}/{tenant_id}")
    async def forget(service: str, tenant_id: str, request: Request) -> dict[str, Any]:
        return {"deleted": await _registry(request).delete(service, tenant_id)}

    @router.get("/_health")
    async def ok() -> dict[str, Any]:
        return {"ok": True}

    return router


# --------------------------------------------------------------------------------------------- app
def create_app(
    database_url: str,
    *,
    keys: AdminKeys | None = None,
    faults: Iterable[Fault | dict[str, Any]] = (),
    check_databases: bool = True,
) -> FastAPI:
    """The stand-in for all three services.

    Args:
        database_url: Postgres (libpq URL) holding ``standin_registrations``; the table is created
            at startup.
        keys: The admin credentials the services accept (defaults: ``AdminKeys()``).
        faults: Faults armed from the start (``Fault`` or its JSON form).
        check_databases: Whether health endpoints really connect to the tenant databases.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(database_url, min_size=1, max_size=5, open=False,
                                   kwargs={"autocommit": True})
        await pool.open(wait=True)
        app.state.registry = Registry(pool)
        await app.state.registry.create_table()
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(title="tenantflow platform stand-in", lifespan=lifespan)
    app.state.keys = keys or AdminKeys()
    app.state.faults = FaultBook(faults)
    app.state.check_databases = check_databases

    @app.exception_handler(StandinError)
    async def standin_error(request: Request, exc: StandinError) -> Response:
        if exc.body is None:
            return Response(status_code=exc.status)
        return JSONResponse(exc.body, status_code=exc.status)

    for router in (auth_router(), realtime_router(), storage_router(), control_router()):
        app.include_router(router)
    app.add_middleware(FaultInjection, book=app.state.faults)
    return app


def main(argv: list[str] | None = None) -> None:
    """``STANDINS_DATABASE_URL=URL python -m standins.platform --port P``."""
    parser = argparse.ArgumentParser(prog="python -m standins.platform", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    # From the environment by default: a URL with a password on the command line is visible in ps.
    parser.add_argument("--database-url", default=os.environ.get("STANDINS_DATABASE_URL"),
                        help="Postgres URL for the registrations table (default: $STANDINS_DATABASE_URL)")
    for service in SERVICES:
        # Default: the key the worker is configured to send (same variable), else the stand-in's own.
        variable = f"TENANTFLOW_{service.upper()}_SERVICE_KEY"
        default = os.environ.get(variable) or getattr(AdminKeys(), service)
        parser.add_argument(f"--{service}-key", default=default,
                            help=f"admin key of the {service} API (default: ${variable})")
    parser.add_argument("--fault", action="append", default=[], type=json.loads,
                        help="a fault to arm at start-up, as JSON (repeatable)")
    parser.add_argument("--no-database-health", action="store_true",
                        help="health endpoints do not connect to tenant databases")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set STANDINS_DATABASE_URL (or pass --database-url)")
    app = create_app(
        args.database_url,
        keys=AdminKeys(auth=args.auth_key, realtime=args.realtime_key, storage=args.storage_key),
        faults=args.fault,
        check_databases=not args.no_database_health,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
