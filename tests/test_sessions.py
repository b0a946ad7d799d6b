"""Browser sessions and the login's brakes (issue 15): the session cookie is HttpOnly and
SameSite=Strict, a change made with the cookie alone needs the CSRF header, the WebSocket
takes the cookie only from the node's own pages, and failed logins are throttled per
account and per address."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ccorch.api.sessions import LoginThrottle, csrf_for, csrf_ok
from tests.conftest import Node, start_node

ADMIN = "admin password for the sessions test"


def test_throttle_counts_failures_per_account_and_per_address() -> None:
    t = LoginThrottle(window=60, per_account=3, per_address=5)
    for i in range(3):
        assert t.retry_after("Olga", "10.0.0.1", i) is None
        t.failed("olga", "10.0.0.1", i)
    assert t.retry_after("olga", "10.0.0.1", 3) == pytest.approx(57)  # the first ages out at 60
    assert t.retry_after("olga", "10.0.0.2", 3) is not None  # the account, from anywhere
    assert t.retry_after("olga", "10.0.0.7", 60.5) is None
    t.succeeded("olga")
    assert t.retry_after("ivan", "10.0.0.1", 4) is None
    t.failed("ivan", "10.0.0.1", 4)
    t.failed("petro", "10.0.0.1", 4)  # five failures from one address, over three accounts
    assert t.retry_after("someone-else", "10.0.0.1", 5) is not None
    assert t.retry_after("someone-else", "10.0.0.9", 5) is None
    assert csrf_ok("tok", csrf_for("tok")) and not csrf_ok("tok", csrf_for("other"))
    assert not csrf_ok("tok", None)


@pytest.fixture
def node(tmp_path: Path, fresh_db: str) -> Iterator[Node]:
    n = start_node(tmp_path, {"DATABASE_URL": fresh_db, "CCORCH_CRM_ADMIN_PASSWORD": ADMIN})
    yield n
    n.kill()


def _request(
    node: Node, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, data, {"content-type": "application/json", **(headers or {})})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, json.loads(raw) if raw else None, r


@pytest.mark.slow
def test_browser_session_cookie_csrf_websocket_origin_and_login_throttle(node: Node) -> None:
    status, body, r = _request(
        node, "POST", "/api/auth/login", {"login": "admin", "password": ADMIN}
    )
    assert status == 200 and body["csrf"] == csrf_for(body["token"])
    cookies = r.headers.get_all("set-cookie") or []
    session = next(c for c in cookies if c.startswith("ccorch_session="))
    assert "HttpOnly" in session and "SameSite=Strict" in session, session
    csrf_cookie = next(c for c in cookies if c.startswith("ccorch_csrf="))
    assert "HttpOnly" not in csrf_cookie  # the page's script reads it
    jar = {"cookie": f"ccorch_session={body['token']}"}

    # reading with the cookie alone is fine; a change needs the CSRF header as well
    assert _request(node, "GET", "/api/auth/me", headers=jar)[0] == 200
    new_user = {"login": "csrf-victim", "full_name": "V", "password": "a long password!",
                "roles": ["operator"]}  # fmt: skip
    status, refused, _ = _request(node, "POST", "/api/users", new_user, jar)
    assert status == 403 and refused["error"] == "csrf", refused
    bad = {**jar, "x-csrf-token": csrf_for("someone else's token")}
    assert _request(node, "POST", "/api/users", new_user, bad)[0] == 403
    good = {**jar, "x-csrf-token": body["csrf"]}
    assert _request(node, "POST", "/api/users", new_user, good)[0] == 201
    # a program with the bearer token needs no CSRF value
    bearer = {"authorization": f"Bearer {body['token']}"}
    assert _request(node, "GET", "/api/auth/me", headers=bearer)[0] == 200

    # the event stream: the cookie from the node's own page, never from another site's
    url = f"ws://127.0.0.1:{node.port}/api/events"
    own = {"Cookie": jar["cookie"], "Origin": f"http://127.0.0.1:{node.port}"}
    with connect(url, additional_headers=own, open_timeout=10) as ws:
        # at once the position to resume from, then what an admin sees: everything
        assert json.loads(ws.recv(timeout=20))["type"] == "heartbeat"
        assert json.loads(ws.recv(timeout=20))["type"] == "queue.snapshot"
    foreign = {"Cookie": jar["cookie"], "Origin": "http://evil.example"}
    try:
        with connect(url, additional_headers=foreign, open_timeout=10) as ws:
            ws.recv(timeout=10)
        raise AssertionError("the foreign page's socket stayed open")
    except InvalidStatus:
        raise AssertionError("closed by status, not by the stream") from None
    except Exception as e:  # closed with 4401 after the upgrade
        assert "4401" in str(e), e

    # logout clears the cookies
    status, _, r = _request(node, "POST", "/api/auth/logout", None, bearer)
    assert status == 200
    assert any(c.startswith("ccorch_session=;") or "Max-Age=0" in c
               for c in r.headers.get_all("set-cookie") or [])  # fmt: skip

    # five wrong passwords for one account: the sixth try waits, even with the right one
    for _ in range(5):
        wrong = _request(node, "POST", "/api/auth/login", {"login": "admin", "password": "x"})
        assert wrong[0] == 401
    status, throttled, r = _request(
        node, "POST", "/api/auth/login", {"login": "admin", "password": ADMIN}
    )
    assert status == 429 and int(r.headers["retry-after"]) > 800, throttled
    # another account from the same address is not locked out by it
    assert (
        _request(
            node,
            "POST",
            "/api/auth/login",
            {"login": "csrf-victim", "password": "a long password!"},
        )[0]
        == 200
    )
