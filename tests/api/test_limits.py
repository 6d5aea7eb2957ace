"""Bounded input: bodies over the limit are refused before auth and parsing (413), numbers and ids
are validated (422, never a 500), only canonical UUIDs are taken, and a 422 does not repeat a huge
input back. Against the app served by uvicorn, so the limit meets a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from api.main import create_app
from standins.server import ThreadedServer
from tenantflow.settings import Settings
from tests.api.conftest import AUTH
from tests.api.test_webhooks import URL, bearer, signup

LIMIT = 64 * 1024


@pytest.fixture
def server(make_settings: object) -> Iterator[tuple[str, Settings]]:
    settings = make_settings(api_max_body_bytes=LIMIT)  # type: ignore[operator]
    with ThreadedServer(create_app(settings)) as served:
        yield served.url, settings


@pytest.fixture
async def client(server: tuple[str, Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server[0], timeout=30) as c:
        yield c


async def test_a_100_mb_body_is_refused_before_auth_with_413(client: httpx.AsyncClient) -> None:
    declared = await client.post("/v1/projects", content=b"x" * (LIMIT + 1))
    assert declared.status_code == 413, declared.text
    assert declared.json()["detail"] == f"request body too large: at most {LIMIT} bytes"


async def test_a_chunked_body_is_cut_off_at_the_limit(server: tuple[str, Settings]) -> None:
    """No Content-Length: the body is counted as it arrives and the server stops reading once it
    passes the limit, long before the client's 100 MB are sent. The 413 is sent, but uvicorn then
    closes a connection with unread data, which the kernel turns into a reset: a client that is
    still sending may see the reset instead of the 413."""
    port = int(server[0].rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/projects HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 16384
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < 100 * 1024 * 1024 and not reader.at_eof() and len(reader._buffer) == 0:  # noqa: SLF001
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
            await asyncio.sleep(0)
    try:
        status_line = await asyncio.wait_for(reader.readline(), 10)
    except ConnectionResetError:
        status_line = b"(reset)"
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413") or status_line == b"(reset)", status_line
    assert sent < 16 * 1024 * 1024, sent  # cut off long before the 100 MB were sent


async def test_the_webhook_is_bounded_too(client: httpx.AsyncClient, server: tuple[str, Settings]) -> None:
    padded = json.loads(signup(uuid.uuid4()))
    padded["record"]["raw_user_meta_data"] = {"pad": "x" * LIMIT}
    response = await client.post(URL, content=json.dumps(padded).encode(), headers=bearer(server[1]))
    assert response.status_code == 413


async def test_a_body_under_the_limit_goes_through(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/projects", json={"name": "Not Valid"}, headers=AUTH)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "raw",
    [
        "+" + "1" * 31,  # int(.., 16) takes a sign: a different UUID than it looks
        "１２３４５６７８-1234-1234-1234-123456789abc",  # full-width digits
        "{12345678-1234-1234-1234-123456789abc}",
        "urn:uuid:12345678-1234-1234-1234-123456789abc",
        "12345678123412341234123456789abc",
        " 12345678-1234-1234-1234-123456789abc",
    ],
)
async def test_only_canonical_user_ids_are_taken(
    client: httpx.AsyncClient, server: tuple[str, Settings], raw: str
) -> None:
    response = await client.post(URL, content=signup(raw), headers=bearer(server[1]))
    assert response.status_code == 422 and "must be the user's UUID" in response.text
    status = await client.get(f"/v1/users/{raw}/status", headers=AUTH)
    assert status.status_code in (404, 422), status.text  # 404: a path with '/' or '{' never routes
    if "/" not in raw:
        assert status.status_code == 422


async def test_a_canonical_user_id_in_capitals_is_the_same_user(client: httpx.AsyncClient) -> None:
    user = uuid.uuid4()
    response = await client.get(f"/v1/users/{str(user).upper()}/status", headers=AUTH)
    assert response.status_code == 404 and str(user) in response.json()["detail"]


async def test_a_uuid_is_not_a_project_name_and_32_hex_digits_are_a_name(client: httpx.AsyncClient) -> None:
    shaped = "d" + str(uuid.uuid4())[1:]  # a valid name by the character rules
    as_name = await client.post("/v1/projects", json={"name": shaped}, headers=AUTH)
    assert as_name.status_code == 422 and "read as a project id" in as_name.text
    hexname = "d" + uuid.uuid4().hex[1:]
    found = await client.get(f"/v1/projects/{hexname}", headers=AUTH)
    assert found.status_code == 404 and "id or name" in found.json()["detail"]


@pytest.mark.parametrize(
    "params", [{"limit": 2**64}, {"limit": -1}, {"limit": "1e9"}, {"cursor": "A" * 150}]
)
async def test_out_of_range_numbers_and_cursors_are_422(client: httpx.AsyncClient, params: dict) -> None:
    response = await client.get("/v1/projects", params=params, headers=AUTH)
    assert response.status_code == 422, response.text


async def test_a_json_body_sent_as_form_data_is_a_422_not_a_500(client: httpx.AsyncClient) -> None:
    """``curl -d '{}'`` sends form data: FastAPI sees bytes, which the 422 must still be able to echo."""
    response = await client.post("/v1/projects", content=b'{"name": "x"}', headers={
        **AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["input"] == '{"name": "x"}'


async def test_a_422_does_not_repeat_a_large_input(client: httpx.AsyncClient) -> None:
    name = "a" * 60_000
    response = await client.post("/v1/projects", json={"name": name, "kind": "x" * 1000}, headers=AUTH)
    assert response.status_code == 422
    assert len(response.content) < 2_000, len(response.content)
    assert "60000 characters" in response.text or "characters)" in response.text
