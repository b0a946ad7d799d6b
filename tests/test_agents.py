"""Operators as people (seed 002: log in, choose the groups, Ready / Lunch / Break / Not
ready; seed 004: a supervisor forces a state), on a node where phones do not log operators
in: every change stored with who made it, seen on the live stream, kept over a restart."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from websockets.sync.client import connect

from tests.conftest import Node, start_node
from tests.sipp import Uas, metrics, register_phone, wait_for
from tests.test_events import _read, _ws
from tests.test_inbound import QUEUES, _center
from tests.test_sip_calls import SipNode, own_sip_node

pytestmark = pytest.mark.slow
ADMIN = "admin password for the agents test"


# phones do not log operators in: operators do, through the API
DESK_ENV = {"CCORCH_CRM_ADMIN_PASSWORD": ADMIN, "CCORCH_ACD_AUTO_LOGIN_ON_REGISTER": "false"}


def _start(cwd: Path, db: str) -> Node:
    return start_node(cwd, {"DATABASE_URL": db, **DESK_ENV})


@pytest.fixture
def desk(pg_admin_url: str, tmp_path: Path) -> Iterator[tuple[SipNode, str]]:
    with own_sip_node(pg_admin_url, tmp_path, DESK_ENV) as made:
        yield made


def _call(
    node: Node, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(
        node.base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _token(node: Node, login: str, password: str) -> str:
    status, body = _call(node, "POST", "/api/auth/login", {"login": login, "password": password})
    assert status == 200, body
    return str(body["token"])


def test_an_operators_day_driven_by_the_operator_and_a_supervisor(
    desk: tuple[SipNode, str],
) -> None:
    sn, db = desk
    node = sn.node
    op, other, boss = (
        _token(node, "op7001", "agent7001"),
        _token(node, "op7003", "agent7003"),
        _token(node, "admin", ADMIN),
    )
    contact = register_phone(sn.target, sn.cwd, "7001")
    time.sleep(0.5)
    # the phone alone no longer logs anyone in
    assert metrics(node.base).get('cc_agents{state="ready"}', 0) == 0
    with _ws(sn, op) as stream:
        status, me = _call(node, "POST", "/api/agent/login", {"queues": ["tech"]}, op)
        assert status == 200 and (me["state"], me["queues"]) == ("ready", ["tech"]), me
        assert me["phone_registered"] is True
        status, refused = _call(node, "POST", "/api/agent/login", {"queues": ["general"]}, op)
        assert status == 422 and "queues" in refused["fields"]  # not one of 7001's groups
        status, me = _call(
            node, "POST", "/api/agent/state", {"state": "not_ready", "reason": "lunch"}, op
        )
        assert status == 200 and (me["state"], me["reason"]) == ("not_ready", "lunch"), me
        # another operator may not force 7001; a supervisor may
        status, _ = _call(node, "PUT", "/api/agents/7001/state", {"state": "ready"}, other)
        assert status == 403
        status, forced = _call(node, "PUT", "/api/agents/7001/state", {"state": "ready"}, boss)
        assert status == 200 and forced["state"] == "ready", forced
        frames = _read(stream, time.monotonic() + 1.5)
    kinds = [(f["type"], f.get("state")) for f in frames if f["type"].startswith("agent.")]
    assert ("agent.login", None) in kinds and ("agent.forced", "ready") in kinds, kinds
    status, listed = _call(node, "GET", "/api/agents", token=boss)
    assert status == 200
    row = next(a for a in listed["items"] if a["extension"] == "7001")
    assert (row["state"], row["from_desktop"]) == ("ready", True)
    assert _call(node, "GET", "/api/agents", token=op)[0] == 403
    with psycopg.connect(db) as conn:
        log = conn.execute(
            """SELECT l.state, l.reason, u.login FROM agent_state_log l
               JOIN users u ON u.id = l.by_user_id WHERE l.extension = '7001' ORDER BY l.id"""
        ).fetchall()
        audit = conn.execute(
            "SELECT u.login FROM audit_log a JOIN users u ON u.id = a.user_id"
            " WHERE a.entity = 'agent' AND a.action = 'force'"
        ).fetchall()
    assert log == [
        ("logged_in", None, "op7001"),
        ("not_ready", "lunch", "op7001"),
        ("ready", "supervisor", "admin"),
    ]
    assert audit == [("admin",)]
    # a restart logs 7001 in again, in the state it was in, with its groups
    sn.node.kill()
    sn.node = node = _start(sn.cwd, db)
    assert wait_for(lambda: metrics(node.base).get('cc_agents{state="ready"}', 0) == 1, 10)
    status, listed = _call(node, "GET", "/api/agents", token=_token(node, "admin", ADMIN))
    row = next(a for a in listed["items"] if a["extension"] == "7001")
    assert (row["state"], row["queues"]) == ("ready", ["tech"]), row
    # the phone goes away while 7001 is logged in: Not ready (device lost), still logged in
    register_phone(sn.target, sn.cwd, "7001", expires=0, contact_port=contact)
    boss = _token(node, "admin", ADMIN)

    def state() -> tuple[str, str | None]:
        rows = _call(node, "GET", "/api/agents", token=boss)[1]["items"]
        row = next(a for a in rows if a["extension"] == "7001")
        return row["state"], row["reason"]

    assert wait_for(lambda: state() == ("not_ready", "device_lost"), 5), state()
    # logging out ends it, and is not undone by a restart
    op = _token(node, "op7001", "agent7001")
    assert _call(node, "POST", "/api/agent/logout", token=op)[0] == 200
    assert _call(node, "POST", "/api/agent/state", {"state": "ready"}, op)[0] == 409


def _command(ws: Any, ref: int, command: str, **fields: Any) -> dict[str, Any]:
    """Send a command frame and read until its reply (events in between are skipped)."""
    ws.send(json.dumps({"id": ref, "command": command, **fields}))
    until = time.monotonic() + 10
    while time.monotonic() < until:
        frame = json.loads(ws.recv(timeout=max(0.05, until - time.monotonic())))
        if frame.get("type") == "reply" and frame.get("id") == ref:
            return dict(frame)
    raise AssertionError(f"no reply to {command}")


def test_the_desktops_agent_commands_over_the_websocket_wrap_up_and_time_per_state(
    pg_admin_url: str, tmp_path: Path
) -> None:
    """Everything an operator does to its state, as WebSocket commands: log in, a call, a
    supervisor's Not ready asked mid-call (applies after it), wrap-up extended once and
    ended early, the center's own reasons; and every stretch of time stored per state."""
    env = DESK_ENV | {
        "CCORCH_ACD_NOT_READY_REASONS": "lunch,break,not_ready,training,meeting,coaching",
        "CCORCH_ACD_WRAP_UP_EXTENSION_SECONDS": "30",
    }
    # the tech queue's wrap-up: 20 s (time to look at it and extend it)
    queues = QUEUES.replace("wrap_up_seconds = 1", "wrap_up_seconds = 20", 1)
    with _center(pg_admin_url, tmp_path, env, queues) as center:
        node, db = center.node, center.db
        op, other, boss = (
            _token(node, "op7001", "agent7001"),
            _token(node, "op7003", "agent7003"),
            _token(node, "admin", ADMIN),
        )
        phone_port = center.register("7001")
        base = f"ws://127.0.0.1:{node.port}/api/events?token="
        with (
            connect(base + op, open_timeout=10) as mine,
            connect(base + other, open_timeout=10) as theirs,
            connect(base + boss, open_timeout=10) as sup,
        ):
            me = _command(mine, 1, "agent.me")
            assert me["status"] == 200, me
            assert me["agent"]["state"] == "logged_out" and "coaching" in me["agent"]["reasons"]
            me = _command(mine, 2, "agent.login", queues=["tech"])
            assert (me["status"], me["agent"]["state"]) == (200, "ready"), me
            # an operator may not force another; a supervisor's command names the operator
            refused = _command(theirs, 3, "agent.force", agent="7001", state="not_ready")
            assert refused["status"] == 403, refused
            assert _command(sup, 4, "agent.force", state="ready")["status"] == 400
            # Ivan presses 1; the operator's phone answers after 0.3 s and hangs up at 4 s
            agent = Uas("agent_hangup.xml", port=phone_port, cwd=center.cwd, extra=["-d", "4000"])
            caller, carrier = center.caller()

            def state() -> str:
                rows = _call(node, "GET", "/api/agents", token=boss)[1]["items"]
                return str(next(a for a in rows if a["extension"] == "7001")["state"])

            caller.listen(1.5)
            caller.press("1")
            assert wait_for(lambda: state() == "busy", 10), state()
            forced = _command(sup, 5, "agent.force", agent="7001", state="not_ready")
            assert (forced["status"], forced["agent"]["state"]) == (200, "busy"), forced
            try:
                assert agent.wait(30).ok
            finally:
                caller.sock.close()
                if carrier.poll() is None:
                    carrier.kill()
            assert wait_for(lambda: state() == "wrap_up", 5), state()
            more = _command(mine, 6, "agent.wrap_up", action="extend")
            assert more["status"] == 200 and 40 < more["agent"]["wrap_up_seconds_left"] <= 50
            again = _command(mine, 7, "agent.wrap_up", action="extend")
            assert again["status"] == 409, again  # once per call
            done = _command(mine, 8, "agent.wrap_up", action="end")
            # the supervisor's Not ready, asked during the call, applies when it is over
            assert (done["agent"]["state"], done["agent"]["reason"]) == ("not_ready", "supervisor")
            bad = _command(mine, 9, "agent.state", state="not_ready", reason="nap")
            assert bad["status"] == 422 and "coaching" in bad["fields"]["reason"], bad
            ok = _command(mine, 10, "agent.state", state="not_ready", reason="coaching")
            assert (ok["agent"]["state"], ok["agent"]["reason"]) == ("not_ready", "coaching")
            assert _command(mine, 11, "agent.state", state="ready")["agent"]["state"] == "ready"
            assert _command(mine, 12, "agent.logout")["agent"]["state"] == "logged_out"
            assert _command(mine, 13, "agent.state", state="ready")["status"] == 409
            seen = _read(sup, time.monotonic() + 1.5)
        changes = [
            (f["state"], f.get("reason"))
            for f in seen
            if f["type"] == "agent.state" and f["agent"] == "7001"
        ]
        assert changes[-3:] == [
            ("not_ready", "coaching"),
            ("ready", None),
            ("logged_out", None),
        ], changes

        def stretches() -> list[tuple[str, str | None, float]]:
            with psycopg.connect(db) as conn:
                rows = conn.execute(
                    """SELECT state, reason, extract(epoch FROM ended_at - started_at)::float
                       FROM agent_state_time WHERE extension = '7001' ORDER BY id"""
                ).fetchall()
            return [(s, r, d) for s, r, d in rows]

        assert wait_for(lambda: len(stretches()) >= 6, 5), stretches()
        rows = stretches()
        kinds = [(s, r) for s, r, _ in rows]
        assert kinds[-6:] == [
            ("offered", None),
            ("busy", None),
            ("wrap_up", None),
            ("not_ready", "supervisor"),
            ("not_ready", "coaching"),
            ("ready", None),
        ], rows
        talk = rows[-5][2]
        assert 3.0 <= talk <= 10, rows  # the operator hung up 4 s after answering
        with psycopg.connect(db) as conn:
            audit = conn.execute(
                "SELECT u.login, a.after->>'state' FROM audit_log a"
                " JOIN users u ON u.id = a.user_id WHERE a.entity = 'agent'"
            ).fetchall()
        assert audit == [("admin", "not_ready")], audit
