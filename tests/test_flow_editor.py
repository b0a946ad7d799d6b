"""The flow editor's server side (issue 20): trying a flow without a call, against the real
CRM of a running node, and listening to a prompt."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.test_agents import _call, _token
from tests.test_inbound import Center, _center


@pytest.fixture
def center(pg_admin_url: str, tmp_path: Path) -> Iterator[Center]:
    with _center(pg_admin_url, tmp_path) as c:
        yield c


def _admin(center: Center) -> str:
    return _token(center.node, "admin", "x" * 12)  # (the test centers' admin password)


def _wav(center: Center, token: str, body: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(
        center.node.base + "/api/flows/say",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_flow_is_tried_as_a_caller_against_the_crm_and_nothing_is_written(
    center: Center,
) -> None:
    node, admin = center.node, _admin(center)

    def walk(keys: str, **more: object) -> dict[str, object]:
        body = {"name": "abc-internet-en", "ani": "0671234567", "keys": keys, **more}
        status, walked = _call(node, "POST", "/api/flows/try", body, admin)
        assert status == 200, walked
        return walked

    # no key yet: the greeting is said and the flow waits at the menu
    first = walk("")
    assert first["outcome"] == {"kind": "waiting", "node": "greeting"}, first
    assert first["path"] == ["caller", "greeting"]
    assert first["variables"]["customer_name"] == "Ivan Petrenko"  # identified by ANI
    # 3, the contract and the PIN: the balance from the CRM, then goodbye
    done = walk("31001#1234#")
    assert done["path"] == [
        "caller", "greeting", "ask_contract", "ask_pin", "check", "balance", "goodbye"
    ]  # fmt: skip
    said = [s["text"] for s in done["steps"] if s["kind"] == "say"]
    assert "Your account balance is 50 hryvnias." in said, said
    assert done["outcome"]["kind"] == "hangup" and done["variables"]["balance"] == "50.00"
    # a wrong PIN is told, and counts nothing against the contract
    with psycopg.connect(center.db) as conn:
        before = conn.execute("SELECT failed_attempts FROM accounts WHERE contract_no = '1001'")
        attempts = before.fetchone()
    wrong = walk("31001#9999#")
    assert "The contract number or the PIN code is wrong." in [
        s.get("text") for s in wrong["steps"]
    ]
    assert wrong["outcome"] == {"kind": "waiting", "node": "ask_contract"}
    with psycopg.connect(center.db) as conn:
        after = conn.execute("SELECT failed_attempts FROM accounts WHERE contract_no = '1001'")
        assert after.fetchone() == attempts
        assert conn.execute("SELECT count(*) FROM cdrs").fetchone() == (0,)
    # 1: the queue it would wait in; t: silence lets the menu's timeout pass
    assert walk("1")["outcome"] == {"kind": "queue", "node": "tech", "queue": "tech",
                                    "priority": 0}  # fmt: skip
    silent = walk("ttt")
    assert silent["outcome"]["node"] == "goodbye" and silent["outcome"]["kind"] == "hangup"
    # an edited text is tried before it is published
    source = (center.cwd / "flows" / "abc-internet-en.yaml").read_text()
    edited = source.replace("Your account balance is", "On your account:")
    status, walked = _call(
        node,
        "POST",
        "/api/flows/try",
        {"source": edited, "name": "abc-internet-en", "keys": "31001#1234#"},
        admin,
    )
    assert status == 200, walked
    assert "On your account: 50 hryvnias." in [s.get("text") for s in walked["steps"]]
    broken = source.replace('"3": ask_contract}', '"3": nowhere}')
    status, refused = _call(
        node, "POST", "/api/flows/try", {"source": broken, "name": "abc-internet-en"}, admin
    )
    assert status == 422 and refused["problems"][0]["node"] == "greeting", refused
    assert _call(node, "POST", "/api/flows/try", {"name": "nope"}, admin)[0] == 404
    assert _call(node, "POST", "/api/flows/try", {"name": "x", "keys": "1a"}, admin)[0] == 422


def test_a_prompt_is_heard_in_each_language(center: Center) -> None:
    admin = _admin(center)
    for language, text in (("en", "Hello."), ("ru", "Здравствуйте."), ("zh", "您好。")):
        status, audio = _wav(center, admin, {"text": text, "language": language})
        assert status == 200, audio[:200]
        with wave.open(io.BytesIO(audio)) as w:
            assert w.getframerate() == 8000 and w.getnframes() > 2000
    assert _wav(center, admin, {"text": "x", "language": "fr"})[0] == 422
