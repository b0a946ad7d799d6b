"""SIP over WebSocket (RFC 7118) with a plain client (the ``websockets`` library, no
browser): registration by digest, the subprotocol, frames that are not SIP, a closed
socket ending its registrations, and a browser leg refused for an SDP without a DTLS
fingerprint."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import websockets

from ccorch.api.sessions import SESSION_COOKIE
from tests.sipp import wait_for
from tests.test_agents import _call, _token
from tests.test_desktop import QUEUES
from tests.test_inbound import Center, _center

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def center(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Center]:
    with _center(pg_admin_url, tmp_path_factory.mktemp("sipws"), queues=QUEUES) as c:
        yield c


def md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()  # noqa: S324 - SIP digest's MD5


class WsPhone:
    """A minimal RFC 7118 user agent: one request at a time, digest with MD5."""

    def __init__(self, ws: websockets.ClientConnection, user: str, password: str) -> None:
        self.ws, self.user, self.password = ws, user, password
        self.call_id = uuid.uuid4().hex
        self.cseq = 0
        self.host = "df7jal23ls0d.invalid"

    def request(self, method: str, uri: str, extra: str = "", body: str = "") -> str:
        self.cseq += 1
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/WS {self.host};branch=z9hG4bK{uuid.uuid4().hex[:10]}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.user}@127.0.0.1>;tag=ws{self.cseq}\r\n"
            f"To: <sip:{self.user}@127.0.0.1>\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {self.cseq} {method}\r\n"
            f"Contact: <sip:{self.user}@{self.host};transport=ws>;expires=300\r\n"
            f"{extra}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )

    async def response(self) -> str:
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), 10)
            text = frame if isinstance(frame, str) else frame.decode()
            if text.startswith("SIP/2.0 "):
                status = int(text.split()[1])
                if status >= 200:
                    return text

    def credentials(self, challenge: str, method: str, uri: str, header: str) -> str:
        """The Authorization (or Proxy-) header answering the challenge's one MD5 offer."""
        offers = re.findall(r"(?im)^(?:www|proxy)-authenticate: (.*)$", challenge)
        assert len(offers) == 1 and "algorithm=MD5" in offers[0], challenge
        realm = re.search(r'realm="([^"]+)"', offers[0])
        nonce = re.search(r'nonce="([^"]+)"', offers[0])
        assert realm and nonce
        ha1 = md5(f"{self.user}:{realm.group(1)}:{self.password}")
        ha2 = md5(f"{method}:{uri}")
        response = md5(f"{ha1}:{nonce.group(1)}:00000001:abc:auth:{ha2}")
        return (
            f'{header}: Digest username="{self.user}", realm="{realm.group(1)}",'
            f' nonce="{nonce.group(1)}", uri="{uri}", response="{response}",'
            f' algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"\r\n'
        )

    async def register(self) -> str:
        uri = "sip:127.0.0.1"
        await self.ws.send(self.request("REGISTER", uri))
        challenge = await self.response()
        assert challenge.startswith("SIP/2.0 401"), challenge
        auth = self.credentials(challenge, "REGISTER", uri, "Authorization")
        await self.ws.send(self.request("REGISTER", uri, auth))
        return await self.response()

    async def invite(self, uri: str, sdp: str) -> str:
        """An INVITE answering the 407 challenge; the final answer (ACKed if an error)."""
        ctype = "Content-Type: application/sdp\r\n"
        await self.ws.send(self.request("INVITE", uri, ctype, sdp))
        challenge = await self.response()
        assert challenge.startswith("SIP/2.0 407"), challenge
        auth = self.credentials(challenge, "INVITE", uri, "Proxy-Authorization")
        await self.ws.send(self.request("INVITE", uri, ctype + auth, sdp))
        return await self.response()


def test_register_over_websocket(center: Center) -> None:
    async def run() -> None:
        url = center.node.base.replace("http", "ws") + "/sip"
        async with websockets.connect(url, subprotocols=["sip"]) as ws:  # type: ignore[list-item]
            phone = WsPhone(ws, "7003", "agent7003")
            ok = await phone.register()
            assert ok.startswith("SIP/2.0 200"), ok

    asyncio.run(run())


def _session(center: Center, login: str, password: str) -> tuple[str, dict[str, Any]]:
    token = _token(center.node, login, password)
    status, phone = _call(center.node, "GET", "/api/auth/me/phone", token=token)
    assert status == 200, phone
    return token, phone


def test_the_desktop_gets_its_own_phone_account_as_ha1_not_the_password(center: Center) -> None:
    _, phone = _session(center, "op7001", "agent7001")
    assert phone["extension"] == "7001" and phone["websocket_path"] == "/sip"
    assert phone["ha1"] == md5(f"7001:{phone['realm']}:agent7001")
    assert "password" not in phone
    admin = _token(center.node, "admin", "x" * 12)
    status, answer = _call(center.node, "GET", "/api/auth/me/phone", token=admin)
    assert status == 404 and "no extension" in answer["message"], answer


def test_a_session_websocket_registers_only_its_own_extension(center: Center) -> None:
    """A socket opened with the app's cookie belongs to that user: registering another
    extension over it is refused even with that extension's right password."""
    token, _ = _session(center, "op7002", "agent7002")

    async def run() -> None:
        url = center.node.base.replace("http", "ws") + "/sip"
        headers = {"Cookie": f"{SESSION_COOKIE}={token}"}
        async with websockets.connect(
            url,
            subprotocols=["sip"],  # type: ignore[list-item]
            additional_headers=headers,
        ) as ws:
            other = await WsPhone(ws, "7003", "agent7003").register()
            assert other.startswith("SIP/2.0 403"), other
            own = await WsPhone(ws, "7002", "agent7002").register()
            assert own.startswith("SIP/2.0 200"), own

    asyncio.run(run())


def test_bad_frames_get_400_or_are_dropped_and_too_many_close_the_socket(center: Center) -> None:
    async def run() -> None:
        url = center.node.base.replace("http", "ws") + "/sip"
        async with websockets.connect(url, subprotocols=["sip"]) as ws:  # type: ignore[list-item]
            # a request with a broken header: 400 with the reason, the socket stays
            await ws.send(
                "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bKa\r\n"
                "From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: bad1\r\nCSeq: 1 OPTIONS\r\n"
                "Max Forwards 70\r\nContent-Length: 0\r\n\r\n"
            )
            answer = await asyncio.wait_for(ws.recv(), 5)
            assert str(answer).startswith("SIP/2.0 400 Bad Request ("), answer
            # a good request on the same socket is still answered
            phone = WsPhone(ws, "7004", "agent7004")
            await ws.send(phone.request("OPTIONS", "sip:127.0.0.1"))
            assert (await phone.response()).startswith("SIP/2.0 200")
            # frames that are not SIP at all: dropped; after ten the socket is closed
            for _ in range(10):
                await ws.send("hello, is this SIP?")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002

        # without the subprotocol: the handshake itself is refused
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url):
                pass
        assert refused.value.response.status_code == 400

    asyncio.run(run())
    # and the node keeps serving
    assert _call(center.node, "GET", "/healthz")[0] == 200


def test_closing_the_socket_ends_its_registration(center: Center) -> None:
    async def run() -> None:
        url = center.node.base.replace("http", "ws") + "/sip"
        async with websockets.connect(url, subprotocols=["sip"]) as ws:  # type: ignore[list-item]
            assert (await WsPhone(ws, "7004", "agent7004").register()).startswith("SIP/2.0 200")
            assert _registered(center, "7004")

    asyncio.run(run())
    assert wait_for(lambda: not _registered(center, "7004"), 5)
    with psycopg.connect(center.db) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM sip_registrations WHERE username = '7004'"
        ).fetchone()
    assert rows is not None and rows[0] == 0


def _registered(center: Center, ext: str) -> bool:
    admin = _token(center.node, "admin", "x" * 12)
    status, agents = _call(center.node, "GET", "/api/agents", token=admin)
    assert status == 200, agents
    return any(a["extension"] == ext and a["phone_registered"] for a in agents["items"])


def test_an_invite_with_plain_rtp_from_a_websocket_gets_488_with_the_reason(
    center: Center,
) -> None:
    """A browser leg is DTLS-SRTP only: an authenticated INVITE over the WebSocket whose
    SDP has no fingerprint is refused, and says why."""

    async def run() -> None:
        url = center.node.base.replace("http", "ws") + "/sip"
        async with websockets.connect(url, subprotocols=["sip"]) as ws:  # type: ignore[list-item]
            phone = WsPhone(ws, "7003", "agent7003")
            assert (await phone.register()).startswith("SIP/2.0 200")
            sdp = (
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            )
            answer = await phone.invite("sip:100@127.0.0.1", sdp)
            assert answer.startswith("SIP/2.0 488 Not Acceptable Here (WebRTC SDP refused"), answer
            assert "no a=fingerprint" in answer

    asyncio.run(run())
