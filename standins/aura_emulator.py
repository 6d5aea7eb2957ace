"""An in-memory emulator of the Neo4j Aura API v1, for tests and the dev stack.

It answers what tenantflow uses, shaped as the documented API:

* ``POST /oauth/token`` — client credentials over HTTP Basic, form ``grant_type=client_credentials``;
  ``{access_token, expires_in, token_type}``. An expired token gets 403, an unknown one 401.
* ``GET /v1/instances?tenantId=`` — ``{data: [{id, name, status, tenant_id, cloud_provider, ...}]}``.
* ``POST /v1/instances`` — 202 ``{data: {id, name, status: "creating", tenant_id, cloud_provider,
  region, type, connection_url, username, password}}``; the password is shown only here.
* ``GET /v1/instances/{id}`` — the first ``polls_until_running`` GETs see ``creating``, later ones
  ``running``.
* ``DELETE /v1/instances/{id}`` — 202, ``destroying``; gone (404, unlisted) after ``polls_until_gone``
  more reads.

Errors are ``{"errors": [{"message", "reason", "field"}]}``. Region, type and memory are validated
(400); a tenant may hold one ``free-db`` instance (409); unknown tenants get 404.

Test controls live under ``/_emulator/`` and on the :class:`AuraEmulator` object itself (the server
runs in another thread; a lock guards the state):

* ``POST /_emulator/faults`` ``{"status": 429, "count": 2, "retry_after": 1}`` — the next ``count``
  matching requests (``method`` / ``path`` prefix filters) answer ``status``; ``delay`` slows them;
  ``after: true`` applies the request first and then answers the fault (a response lost after Aura
  acted: the crash hook). ``DELETE /_emulator/faults`` clears them.
* ``GET /_emulator/instances`` — every instance, including destroying ones, with counts of created
  and deleted instances and a hash (never the value) of each password.
* ``GET /_emulator/requests`` — the request log: method, path, query, status; no headers, no bodies.
* ``POST /_emulator/tokens/expire`` — expire every issued token; ``POST /_emulator/config`` — change
  ``polls_until_running``, ``polls_until_gone``, ``token_ttl_seconds``; ``POST /_emulator/reset``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

CLOUD_REGIONS: dict[str, frozenset[str]] = {
    "gcp": frozenset({"europe-west1", "europe-west2", "us-central1", "us-east1", "asia-east1"}),
    "aws": frozenset({"eu-west-1", "eu-central-1", "us-east-1", "us-west-2"}),
    "azure": frozenset({"westeurope", "eastus", "westus3"}),
}
INSTANCE_TYPES = frozenset({"enterprise-db", "enterprise-ds", "professional-db", "free-db"})
MEMORY_SIZES = frozenset({"1GB", "2GB", "4GB", "8GB", "16GB", "32GB", "64GB"})
NAME_MAX = 30
GONE = "destroyed"


@dataclass
class EmulatorConfig:
    """How the emulator behaves; every field can be changed while it runs."""

    client_id: str = "emulator-client"
    client_secret: str = "emulator-secret-0123456789"
    tenant_ids: tuple[str, ...] = ("emulated-tenant",)
    token_ttl_seconds: float = 3600.0
    # GETs that see a new instance ``creating``; the next one sees it running.
    polls_until_running: int = 2
    # Reads (GET or list) that still see a deleted instance ``destroying``; then it is gone.
    polls_until_gone: int = 1
    # Status a creating instance reaches instead of running (e.g. "destroying" to emulate a failure).
    final_status: str = "running"
    # Aura's account-wide request limit (125/min paid, 25/min Free), every API request counted:
    # one over it in the trailing window is answered 429 with Retry-After. None: no limit.
    rate_limit: int | None = None
    rate_window_seconds: float = 60.0


@dataclass
class Fault:
    """The next ``count`` requests matching ``method``/``path`` get this treatment."""

    count: int = 1
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    after: bool = False
    method: str | None = None
    path: str | None = None
    message: str = "injected fault"

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method) and (
            self.path is None or path.startswith(self.path)
        )


@dataclass
class Instance:
    id: str
    name: str
    tenant_id: str
    cloud_provider: str
    region: str
    type: str
    memory: str
    version: str
    password: str
    created_at: str
    status: str = "creating"
    polls: int = 0

    @property
    def connection_url(self) -> str:
        return f"neo4j+s://{self.id}.databases.neo4j.io"

    def public(self) -> dict[str, Any]:
        """What ``GET /v1/instances/{id}`` shows (never the password)."""
        return {
            "id": self.id, "name": self.name, "status": self.status, "tenant_id": self.tenant_id,
            "cloud_provider": self.cloud_provider, "region": self.region, "type": self.type,
            "memory": self.memory, "connection_url": self.connection_url,
            "neo4j_version": self.version, "created_at": self.created_at,
        }


@dataclass
class _State:
    instances: dict[str, Instance] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    faults: list[Fault] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0
    deleted: int = 0


def _error(status: int, message: str, reason: str, field_name: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"errors": [{"message": message, "reason": reason, "field": field_name}]}
    return JSONResponse(body, status_code=status, headers=headers)


class AuraEmulator:
    """The emulator: its state, its test controls, and ``app`` (the ASGI application)."""

    def __init__(self, config: EmulatorConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or EmulatorConfig(), **overrides)
        self._lock = threading.Lock()
        self._state = _State()
        self.app = self._build_app()

    # ------------------------------------------------------------ test controls
    def inject(self, **fault: Any) -> None:
        """Queue a fault (fields of :class:`Fault`)."""
        with self._lock:
            self._state.faults.append(Fault(**fault))

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def configure(self, **values: Any) -> None:
        """Change fields of the running emulator's :class:`EmulatorConfig`."""
        with self._lock:
            self.config = dataclasses.replace(self.config, **values)

    def expire_tokens(self) -> None:
        with self._lock:
            for token in self._state.tokens:
                self._state.tokens[token] = 0.0

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    def instances(self) -> dict[str, Any]:
        """Every instance (destroying ones too) and how many were created and deleted."""
        with self._lock:
            return {
                "instances": [
                    {**i.public(), "password_sha256": hashlib.sha256(i.password.encode()).hexdigest()}
                    for i in self._state.instances.values()
                ],
                "created_count": self._state.created,
                "deleted_count": self._state.deleted,
            }

    def live_instances(self, name: str | None = None) -> list[dict[str, Any]]:
        """Instances that exist and are not being destroyed (optionally with one name)."""
        return [
            i for i in self.instances()["instances"]
            if i["status"] not in ("destroying", GONE) and (name is None or i["name"] == name)
        ]

    def requests(self) -> list[dict[str, Any]]:
        """The request log (method, path, query, status, fault); secrets are never recorded."""
        with self._lock:
            return [dict(entry) for entry in self._state.log]

    def count(self, method: str, path: str | None = None) -> int:
        """How many logged requests had this method (and path, exactly)."""
        return sum(
            1 for r in self.requests() if r["method"] == method and (path is None or r["path"] == path)
        )

    # ---------------------------------------------------------------- internals
    def rate(self) -> dict[str, Any]:
        """The most requests seen in any window of ``rate_window_seconds``, and how many were
        refused for the limit."""
        window = self.config.rate_window_seconds
        times = sorted(r["at"] for r in self.requests())
        most, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            most = max(most, end - start + 1)
        return {"limit": self.config.rate_limit, "window_seconds": window, "requests": len(times),
                "max_in_window": most,
                "rate_limited": sum(1 for r in self.requests() if r["status"] == 429 and not r["fault"])}

    def _over_limit(self, now: float) -> bool:
        """Whether one more request now would exceed the limit (called under the lock)."""
        limit = self.config.rate_limit
        if limit is None:
            return False
        recent = sum(1 for r in self._state.log if now - r["at"] < self.config.rate_window_seconds)
        return recent >= limit

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._state.faults.remove(fault)
                    return fault
        return None

    def _check_token(self, request: Request) -> JSONResponse | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "Missing bearer token", "unauthorized")
        with self._lock:
            expiry = self._state.tokens.get(token)
        if expiry is None:
            return _error(401, "Invalid bearer token", "unauthorized")
        if expiry <= time.monotonic():
            return _error(403, "The access token has expired", "token-expired")
        return None

    def _observe(self, inst: Instance) -> None:
        """A read of ``inst`` moves it along its lifecycle (caller holds the lock)."""
        inst.polls += 1
        if inst.status == "creating" and inst.polls >= self.config.polls_until_running:
            inst.status = self.config.final_status
        elif inst.status == "destroying" and inst.polls >= self.config.polls_until_gone:
            inst.status = GONE
            del self._state.instances[inst.id]
            self._state.deleted += 1

    def _validate(self, body: dict[str, Any]) -> JSONResponse | None:
        cfg = self.config
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX:
            return _error(400, f"name must be 1-{NAME_MAX} characters", "invalid-name", "name")
        provider = body.get("cloud_provider")
        if provider not in CLOUD_REGIONS:
            return _error(400, f"Unsupported cloud provider {provider!r}", "invalid-cloud-provider",
                          "cloud_provider")
        if body.get("region") not in CLOUD_REGIONS[provider]:
            return _error(400, f"Region {body.get('region')!r} is not available for {provider}",
                          "invalid-region", "region")
        itype = body.get("type")
        if itype not in INSTANCE_TYPES:
            return _error(400, f"Unsupported instance type {itype!r}", "invalid-type", "type")
        memory = body.get("memory")
        if memory not in MEMORY_SIZES or (itype == "free-db" and memory != "1GB"):
            return _error(400, f"Memory {memory!r} is not available for {itype}", "invalid-memory",
                          "memory")
        tenant = body.get("tenant_id")
        if tenant not in cfg.tenant_ids:
            return _error(404, f"Tenant {tenant!r} not found", "tenant-not-found", "tenant_id")
        if itype == "free-db" and any(
            i.tenant_id == tenant and i.type == "free-db" for i in self._state.instances.values()
        ):
            return _error(409, "A free instance already exists; only one free instance is allowed",
                          "free-instance-limit-reached", "type")
        return None

    # ---------------------------------------------------------------------- app
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Aura API v1 emulator")
        emu = self

        @app.middleware("http")
        async def faults_and_log(request: Request, call_next: Any) -> Response:
            path = request.url.path
            if path.startswith("/_emulator"):
                return await call_next(request)
            fault = emu._take_fault(request.method, path)
            entry: dict[str, Any] = {
                "method": request.method, "path": path, "query": dict(request.query_params),
                "status": None, "fault": fault is not None, "at": time.monotonic(),
            }
            with emu._lock:
                over = emu._over_limit(entry["at"])
                emu._state.log.append(entry)
            if over:
                entry["status"] = 429
                return _error(429, "rate limit exceeded", "rate-limited",
                              headers={"Retry-After": f"{emu.config.rate_window_seconds:g}"})
            response: Response | None = None
            if fault is None or fault.after:
                response = await call_next(request)  # "after": Aura acts, then the answer is late/lost
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if response is None and (fault is None or fault.status is None):
                response = await call_next(request)
            if fault is not None and fault.status is not None:
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
                response = _error(fault.status, fault.message, "injected", headers=headers)
            assert response is not None
            entry["status"] = response.status_code
            return response

        @app.post("/oauth/token")
        async def token(request: Request) -> Response:
            scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
            try:
                client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                client_id = secret = ""
            cfg = emu.config
            if scheme.lower() != "basic" or not (
                secrets.compare_digest(client_id, cfg.client_id)
                and secrets.compare_digest(secret, cfg.client_secret)
            ):
                return _error(401, "Invalid client credentials", "invalid_client")
            # Parsed by hand: FastAPI's form support needs python-multipart, which we do not ship.
            form = urllib.parse.parse_qs((await request.body()).decode("latin-1"))
            if form.get("grant_type") != ["client_credentials"]:
                return _error(400, "grant_type must be client_credentials", "unsupported_grant_type",
                              "grant_type")
            access = secrets.token_urlsafe(24)
            with emu._lock:
                emu._state.tokens[access] = time.monotonic() + cfg.token_ttl_seconds
            return JSONResponse(
                {"access_token": access, "expires_in": cfg.token_ttl_seconds, "token_type": "bearer"}
            )

        @app.get("/v1/instances")
        async def list_instances(request: Request, tenantId: str | None = None) -> Response:  # noqa: N803
            if (denied := emu._check_token(request)) is not None:
                return denied
            with emu._lock:
                found = [i for i in emu._state.instances.values()
                         if tenantId is None or i.tenant_id == tenantId]
                data = [
                    {"id": i.id, "name": i.name, "status": i.status, "tenant_id": i.tenant_id,
                     "cloud_provider": i.cloud_provider, "created_at": i.created_at}
                    for i in found
                ]
                for inst in found:
                    if inst.status == "destroying":
                        emu._observe(inst)
            return JSONResponse({"data": data})

        @app.post("/v1/instances")
        async def create_instance(request: Request) -> Response:
            if (denied := emu._check_token(request)) is not None:
                return denied
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "The request body must be JSON", "invalid-body")
            if not isinstance(body, dict):
                return _error(400, "The request body must be an object", "invalid-body")
            with emu._lock:
                if (invalid := emu._validate(body)) is not None:
                    return invalid
                inst = Instance(
                    id=secrets.token_hex(4), name=body["name"], tenant_id=body["tenant_id"],
                    cloud_provider=body["cloud_provider"], region=body["region"], type=body["type"],
                    memory=body["memory"], version=str(body.get("version") or "5"),
                    password=secrets.token_urlsafe(32),
                    created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                )
                emu._state.instances[inst.id] = inst
                emu._state.created += 1
            data = {
                "id": inst.id, "name": inst.name, "status": inst.status, "tenant_id": inst.tenant_id,
                "cloud_provider": inst.cloud_provider, "region": inst.region, "type": inst.type,
                "connection_url": inst.connection_url, "username": "neo4j", "password": inst.password,
            }
            return JSONResponse({"data": data}, status_code=202)

        @app.get("/v1/instances/{instance_id}")
        async def get_instance(request: Request, instance_id: str) -> Response:
            if (denied := emu._check_token(request)) is not None:
                return denied
            with emu._lock:
                inst = emu._state.instances.get(instance_id)
                if inst is None:
                    return _error(404, f"Instance {instance_id} not found", "instance-not-found")
                data = inst.public()
                emu._observe(inst)
            return JSONResponse({"data": data})

        @app.delete("/v1/instances/{instance_id}")
        async def delete_instance(request: Request, instance_id: str) -> Response:
            if (denied := emu._check_token(request)) is not None:
                return denied
            with emu._lock:
                inst = emu._state.instances.get(instance_id)
                if inst is None:
                    return _error(404, f"Instance {instance_id} not found", "instance-not-found")
                if inst.status != "destroying":
                    inst.status, inst.polls = "destroying", 0
                data = inst.public()
            return JSONResponse({"data": data}, status_code=202)

        # ------------------------------------------------------------ admin API
        @app.post("/_emulator/faults")
        async def add_fault(request: Request) -> Response:
            emu.inject(**(await request.json()))
            return JSONResponse({"ok": True})

        @app.delete("/_emulator/faults")
        async def clear_faults() -> Response:
            emu.clear_faults()
            return JSONResponse({"ok": True})

        @app.get("/_emulator/instances")
        async def all_instances() -> Response:
            return JSONResponse(emu.instances())

        @app.get("/_emulator/requests")
        async def request_log() -> Response:
            return JSONResponse({"requests": emu.requests()})

        @app.post("/_emulator/tokens/expire")
        async def expire_tokens() -> Response:
            emu.expire_tokens()
            return JSONResponse({"ok": True})

        @app.post("/_emulator/config")
        async def configure(request: Request) -> Response:
            emu.configure(**(await request.json()))
            return JSONResponse({"ok": True})

        @app.post("/_emulator/reset")
        async def reset() -> Response:
            emu.reset()
            return JSONResponse({"ok": True})

        return app


def create_app(**config: Any) -> FastAPI:
    """An emulator app (``uvicorn standins.aura_emulator:create_app --factory``)."""
    return AuraEmulator(**config).app
