"""Webhooks (issue 15): an outside receiver gets the events it subscribed to, signed, once
each, even when it was down for a while and when the node restarted in between.

Real parts: the node process, PostgreSQL for the outbox, and an HTTP server of the test's
own as the receiver, stopped and started again on the same port."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccorch.webhooks import backoff, matches, sign
from tests.conftest import Node, free_port, start_node
from tests.sipp import wait_for
from tests.test_agents import ADMIN, DESK_ENV, _call, _token


class Receiver:
    """An HTTP endpoint that keeps every POST (its headers and body)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        got = self.got

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


def _node(tmp_path: Path, db: str) -> Node:
    (tmp_path / "ccorch.toml").write_text(
        "[webhooks]\nmax_backoff_seconds = 1\ntimeout_seconds = 2\n"
    )
    return start_node(tmp_path, {"DATABASE_URL": db, **DESK_ENV})


def test_signing_matching_and_backoff() -> None:
    body = b'{"type":"call.ended"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, body) == f"sha256={expected}"
    assert matches(["call.*"], "call.ended") and not matches(["call.*"], "agent.set")
    assert matches(["*"], "queue.snapshot") and matches(["agent.set"], "agent.set")
    assert not matches(["call.end"], "call.ended")
    assert [backoff(n, 10) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 10, 10]


@pytest.mark.slow
def test_a_receiver_down_and_a_node_restart_lose_nothing(
    tmp_path: Path, fresh_db: str, receiver: Receiver
) -> None:
    node = _node(tmp_path, fresh_db)
    try:
        admin = _token(node, "admin", ADMIN)
        url = f"http://127.0.0.1:{receiver.port}/ccorch"
        assert _call(node, "POST", "/api/webhooks", {"url": "ftp://x/", "events": ["*"]},
                     admin)[0] == 422  # fmt: skip
        op = _token(node, "op7001", "agent7001")
        assert _call(node, "POST", "/api/webhooks", {"url": url, "events": ["*"]}, op)[0] == 403
        status, hook = _call(node, "POST", "/api/webhooks", {"url": url, "events": ["agent.login", "agent.set"]},
                             admin)  # fmt: skip
        assert status == 201 and len(hook["secret"]) == 64, hook
        secret, hook_id = hook["secret"], hook["id"]

        # the receiver is down: an operator's morning goes into the outbox
        assert _call(node, "POST", "/api/agent/login", {"queues": ["tech"]}, op)[0] == 200
        for state in ({"state": "not_ready", "reason": "break"}, {"state": "ready"}):
            assert _call(node, "POST", "/api/agent/state", state, op)[0] == 200

        def outbox() -> dict[str, int]:
            listed = _call(node, "GET", "/api/webhooks", token=admin)[1]["items"]
            counts: dict[str, int] = listed[0]["deliveries"]
            return counts

        assert wait_for(lambda: outbox()["pending"] == 3, 10), outbox()
        time.sleep(2.5)  # a few attempts fail meanwhile
        status, tried = _call(node, "GET", f"/api/webhooks/{hook_id}/deliveries", token=admin)
        assert status == 200 and tried["items"][-1]["attempts"] >= 1, tried
        assert tried["items"][-1]["last_error"], tried

        # the node dies (no goodbye) with the three undelivered; one more after the restart
        node.kill()
        node = _node(tmp_path, fresh_db)
        op = _token(node, "op7001", "agent7001")  # sessions outlive the restart anyway
        assert _call(node, "POST", "/api/agent/logout", None, op)[0] == 200
        receiver.start()
        admin = _token(node, "admin", ADMIN)
        assert wait_for(lambda: outbox() == {"pending": 0, "delivered": 4, "failed": 0}, 20), (
            outbox()
        )
    finally:
        node.kill()

    deliveries = [h["x-ccorch-delivery"] for h, _ in receiver.got]
    assert len(deliveries) == len(set(deliveries)) == 4, receiver.got  # once each
    types = []
    for headers, body in receiver.got:
        ts = int(headers["x-ccorch-timestamp"])
        assert headers["x-ccorch-signature"] == sign(secret, ts, body)
        event = json.loads(body)
        assert event["type"] == headers["x-ccorch-event"]
        types.append((event["type"], event.get("state")))
    assert types == [
        ("agent.login", None),
        ("agent.set", "not_ready"),
        ("agent.set", "ready"),
        ("agent.set", "logged_out"),
    ], types
