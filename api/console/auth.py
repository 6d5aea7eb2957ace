"""Who may use the console, and proof that a form was posted by the console itself.

*Login.* The API token, or ``console_password`` when it is set, compared in constant time (both
are always compared, so the time says nothing about which one matched). A failure waits
``FAILED_LOGIN_DELAY`` and the page does not say which secret was tried.

*Session.* A signed cookie, not a server-side row: ``base64url(json {"sid", "exp"})`` ``.``
``base64url(HMAC-SHA256)``. The key is derived with HKDF from the secrets that grant access, so
rotating the API token or the console password logs every browser out; ``exp`` ends a login after
``console_session_hours`` whatever the browser does with the cookie. Flags: ``HttpOnly`` (no
script reads it), ``SameSite=Strict`` (no other site's page sends it along), ``Path=/console``,
and ``Secure`` when the request came over https. Logging out deletes the cookie in that browser;
a copied cookie stays valid until it expires or the secrets rotate (there is no session table to
revoke it from).

*Forms (CSRF).* Every POST carries ``csrf_token``, the HMAC of the session id (so it is worthless
with another session), and is refused (403) without it or with another one; a request whose
``Origin`` is not ours, or that the browser marks ``Sec-Fetch-Site: cross-site``, is refused too.
SameSite=Strict alone already keeps the cookie off cross-site requests; the token and the origin
check hold where it does not (old browsers, a sibling subdomain).

*Flash messages* (what an action did, shown once after its redirect) ride in a second cookie,
signed the same way, so no other page can put words in the console's mouth.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import Depends, HTTPException, Request, Response, status

from api.deps import SettingsDep
from tenantflow.settings import Settings

SESSION_COOKIE = "tenantflow_console"
FLASH_COOKIE = "tenantflow_console_flash"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf_token"
# Seconds a failed login waits before it answers: slows guessing, costs a person nothing.
FAILED_LOGIN_DELAY = 0.5
# A flash message longer than this is cut (it travels in a cookie).
FLASH_MAX_CHARS = 600

FlashKind = Literal["ok", "error"]


class LoginRequired(Exception):
    """A console page was asked for without a valid login (answered by a redirect to the login)."""


class Forbidden(Exception):
    """A console POST that did not come from the console's own form (answered 403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Session:
    """A logged-in browser: its random id, when the login ends, and its forms' CSRF token."""

    sid: str
    expires_at: int
    csrf_token: str


@dataclass(frozen=True)
class Flash:
    kind: FlashKind
    text: str


# ------------------------------------------------------------------------------------- secrets
def console_key(settings: Settings) -> bytes:
    """The HMAC key of sessions, CSRF tokens and flashes: HKDF-SHA256 over the secrets that grant
    access (length-prefixed, so no two pairs of secrets give the same input)."""
    token = settings.api_token.get_secret_value().encode()
    password = settings.console_password.get_secret_value().encode()
    material = len(token).to_bytes(4, "big") + token + password
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"tenantflow-console", info=b"cookie-mac-v1")
    return hkdf.derive(material)


def password_ok(settings: Settings, given: str) -> bool:
    """Whether ``given`` is the API token or the (non-empty) console password."""
    digest = hashlib.sha256(given.encode()).digest()
    ok = False
    for secret in (settings.api_token, settings.console_password):
        expected = secret.get_secret_value()
        # Digests of equal length: compare_digest then takes the same time whatever is given.
        same = hmac.compare_digest(digest, hashlib.sha256(expected.encode()).digest())
        ok |= same and bool(expected)
    return ok and bool(given)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, payload: str) -> str:
    return _b64(hmac.new(key, f"{purpose}\0{payload}".encode(), hashlib.sha256).digest())


def seal(key: bytes, purpose: str, data: dict[str, Any]) -> str:
    """``data`` as a cookie value only this key can have made (readable, not encrypted)."""
    payload = _b64(json.dumps(data, separators=(",", ":")).encode())
    return f"{payload}.{_mac(key, purpose, payload)}"


def unseal(key: bytes, purpose: str, value: str | None) -> dict[str, Any] | None:
    """What ``seal`` put in ``value``, or None if the value was not made with this key and purpose."""
    payload, dot, mac = (value or "").partition(".")
    if not dot or not hmac.compare_digest(mac.encode(), _mac(key, purpose, payload).encode()):
        return None
    try:
        data = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        return None
    return data if isinstance(data, dict) else None


def csrf_token(key: bytes, sid: str) -> str:
    return _mac(key, "csrf", sid)


# ------------------------------------------------------------------------------------ sessions
def new_session(settings: Settings, *, now: float | None = None) -> tuple[str, Session]:
    """A fresh login: the cookie value to set and the session it stands for."""
    key = console_key(settings)
    sid = secrets.token_urlsafe(18)
    expires_at = int((time.time() if now is None else now) + settings.console_session_hours * 3600)
    session = Session(sid, expires_at, csrf_token(key, sid))
    return seal(key, "session", {"sid": sid, "exp": expires_at}), session


def read_session(settings: Settings, value: str | None, *, now: float | None = None) -> Session | None:
    """The session a cookie value stands for, or None: forged, made with older secrets, expired."""
    key = console_key(settings)
    data = unseal(key, "session", value)
    if data is None:
        return None
    sid, expires_at = data.get("sid"), data.get("exp")
    if not isinstance(sid, str) or not isinstance(expires_at, int):
        return None
    if expires_at <= (time.time() if now is None else now):
        return None
    return Session(sid, expires_at, csrf_token(key, sid))


def _cookie_flags(request: Request) -> dict[str, Any]:
    return {"path": COOKIE_PATH, "httponly": True, "samesite": "strict",
            "secure": request.url.scheme == "https"}


def set_session_cookie(response: Response, request: Request, value: str, session: Session) -> None:
    max_age = max(0, session.expires_at - int(time.time()))
    response.set_cookie(SESSION_COOKIE, value, max_age=max_age, **_cookie_flags(request))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, **_cookie_flags(request))


# -------------------------------------------------------------------------------------- flashes
def set_flash(response: Response, request: Request, settings: Settings, kind: FlashKind, text: str) -> None:
    """Show ``text`` once, on the next console page this browser loads."""
    value = seal(console_key(settings), "flash", {"kind": kind, "text": text[:FLASH_MAX_CHARS]})
    response.set_cookie(FLASH_COOKIE, value, max_age=300, **_cookie_flags(request))


def take_flash(request: Request, settings: Settings) -> Flash | None:
    """The flash waiting for this request, if any (the caller clears it with ``clear_flash``)."""
    data = unseal(console_key(settings), "flash", request.cookies.get(FLASH_COOKIE))
    if data is None or data.get("kind") not in ("ok", "error") or not isinstance(data.get("text"), str):
        return None
    return Flash(data["kind"], data["text"])


def clear_flash(response: Response, request: Request) -> None:
    response.delete_cookie(FLASH_COOKIE, **_cookie_flags(request))


# --------------------------------------------------------------------------------- dependencies
async def current_session(request: Request, settings: SettingsDep) -> Session | None:
    """The request's login, or None."""
    return read_session(settings, request.cookies.get(SESSION_COOKIE))


MaybeSessionDep = Annotated[Session | None, Depends(current_session)]


async def page_session(session: MaybeSessionDep) -> Session:
    """The login a page needs.

    Raises:
        LoginRequired: none (the console answers with a redirect to its login page).
    """
    if session is None:
        raise LoginRequired()
    return session


def check_origin(request: Request) -> None:
    """Refuse a request another site's page made the browser send.

    Raises:
        Forbidden: ``Sec-Fetch-Site`` says cross-site or same-site, or ``Origin`` is not ours.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"refused: the request came from another site ({site})")
    origin = request.headers.get("origin")
    ours = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin != ours:
        raise Forbidden("refused: the form was sent from another origin")


async def form_session(request: Request, session: MaybeSessionDep) -> Session:
    """The login of a POST that came from one of the console's own forms.

    Raises:
        Forbidden: another origin sent it, or its ``csrf_token`` is missing or not this session's.
        LoginRequired: there is no login.
    """
    check_origin(request)
    if session is None:
        raise LoginRequired()
    given = (await request.form()).get(CSRF_FIELD)
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), session.csrf_token.encode()):
        raise Forbidden("refused: the form's security token is missing or belongs to another login; "
                        "reload the page and try again")
    return session


PageSessionDep = Annotated[Session, Depends(page_session)]
FormSessionDep = Annotated[Session, Depends(form_session)]


async def fragment_session(session: MaybeSessionDep) -> Session:
    """The login a page's live parts (fragments, the event stream) need.

    Raises:
        HTTPException: 401 without one (the page's script then reloads, and lands on the login).
    """
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in to the console")
    return session


FragmentSessionDep = Annotated[Session, Depends(fragment_session)]
