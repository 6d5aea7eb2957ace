"""The opaque cursor of ``GET /v1/projects``: where the next page starts.

A cursor is the base64url (unpadded) text of the last row's ``created_at`` (ISO 8601, with its
offset) and id, joined by ``|``. Clients must treat it as opaque and pass ``next_cursor`` back
unchanged; the format may change.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from tenantflow.store import Keyset

_SEPARATOR = "|"


def encode_cursor(keyset: Keyset) -> str:
    """The cursor of the page that starts after ``keyset``."""
    text = f"{keyset.created_at.isoformat()}{_SEPARATOR}{keyset.id}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Keyset:
    """The keyset ``cursor`` holds.

    Raises:
        ValueError: the cursor was not made by ``encode_cursor`` (the message says what is wrong).
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not base64url text") from None
    created_at, sep, pid = text.partition(_SEPARATOR)
    if not sep:
        raise ValueError("not a cursor")
    try:
        when, ident = datetime.fromisoformat(created_at), uuid.UUID(pid)
    except ValueError:
        raise ValueError("not a cursor") from None
    if when.tzinfo is None:
        raise ValueError("not a cursor")
    return Keyset(when, ident)
