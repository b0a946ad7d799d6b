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

from tests.conftest import Node, start_node
from tests.sipp import metrics, register_phone, wait_for
from tests.test_events import _read, _ws
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
    assert metrics(node.base).get('cc_acd_agents{state="ready"}', 0) == 0
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
    assert wait_for(lambda: metrics(node.base).get('cc_acd_agents{state="ready"}', 0) == 1, 10)
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
