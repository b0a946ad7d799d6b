"""The live event stream over the WebSocket, against a real node and a real call: who sees
what, and a client that reconnects with the last number it saw gets what it missed, once."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.test_sip_calls import SipNode, own_sip_node

pytestmark = pytest.mark.slow
ADMIN = "admin password for the events test"


@pytest.fixture
def node(pg_admin_url: str, tmp_path: Path) -> Iterator[SipNode]:
    with own_sip_node(pg_admin_url, tmp_path, {"CCORCH_CRM_ADMIN_PASSWORD": ADMIN}) as (sn, _):
        yield sn


def _login(sn: SipNode, login: str, password: str) -> str:
    req = urllib.request.Request(
        sn.node.base + "/api/auth/login",
        data=json.dumps({"login": login, "password": password}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        token: str = json.loads(r.read())["token"]
        return token


def _ws(sn: SipNode, token: str, since: int | None = None) -> ClientConnection:
    query = f"?token={token}" + (f"&since={since}" if since is not None else "")
    return connect(f"ws://127.0.0.1:{sn.node.port}/api/events{query}", open_timeout=10)


def _read(ws: ClientConnection, until: float) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while time.monotonic() < until:
        try:
            frames.append(json.loads(ws.recv(timeout=max(0.05, until - time.monotonic()))))
        except TimeoutError:
            break
    return frames


def test_each_user_sees_its_events_and_a_reconnect_misses_nothing(node: SipNode) -> None:
    sn = node
    admin = _login(sn, "admin", ADMIN)
    mine = _login(sn, "op7001", "agent7001")  # the operator whose phone the call rings
    other = _login(sn, "op7003", "agent7003")  # works another queue, not this call
    with _ws(sn, admin) as sup, _ws(sn, mine) as op, _ws(sn, other) as op3:
        sn.register("7001")  # the phone comes up: operator 7001 logs in, Ready
        phone = sn.phone("agent_answer.xml", extra=["-d", "100"])
        r = sn.trunk("trunk_call.xml", extra=["-d", "300"])
        assert r.ok, r  # type: ignore[attr-defined]
        assert phone.wait().ok
        seen, op_seen, op3_seen = (_read(ws, time.monotonic() + 2) for ws in (sup, op, op3))
    calls = [f for f in seen if f["type"].startswith("call.")]
    assert [f["type"] for f in calls] == [
        "call.arrived",
        "call.identified",  # the number is Ivan Petrenko's
        "call.offered",  # the phone rung directly gets the screen pop too
        "call.ringing",
        "call.answered",
        "call.ended",
        "call.recorded",
    ], seen
    assert len({f["call"] for f in calls}) == 1 and calls[3]["target"] == "7001"
    assert calls[2]["agent"] == "7001" and calls[2]["customer"]["name"] == "Ivan Petrenko"
    seqs = [f["seq"] for f in seen if "seq" in f and f["type"] != "heartbeat"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    ready = {"type": "agent.state", "agent": "7001", "state": "ready"}
    assert any(f.items() >= ready.items() for f in seen), seen
    # the operator sees its call from the moment it rings, and its own state
    assert [f["type"] for f in op_seen if f["type"].startswith("call.")] == [
        "call.offered",
        "call.ringing",
        "call.answered",
        "call.ended",
        "call.recorded",
    ], op_seen
    assert any(f.items() >= ready.items() for f in op_seen), op_seen
    assert all(f.get("agent", "7001") == "7001" for f in op_seen)
    # another operator sees none of it: only its own queues' counts (the demo's 7003 works
    # general and energy), when they are sent
    own = {("queue.snapshot", "general"), ("queue.snapshot", "energy")}
    assert [
        f for f in op3_seen if f["type"] != "heartbeat" and (f["type"], f.get("queue")) not in own
    ] == [], op3_seen
    # a supervisor who lost the connection right after "arrived" gets the rest, once
    arrived = calls[0]["seq"]
    with _ws(sn, admin, since=arrived) as again:
        replay = _read(again, time.monotonic() + 1.5)
    # (what was published after the first reading, e.g. a periodic queue.snapshot, follows)
    replayed = [f["seq"] for f in replay if f["type"] != "heartbeat" and f["seq"] <= seqs[-1]]
    assert replayed == [s for s in seqs if s > arrived], (replayed, seqs)


def test_no_session_no_stream(node: SipNode) -> None:
    with _ws(node, "forged-token") as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
