"""SMS through a real SMPP connection (issue 19): the SMSC is the npm ``smpp`` package's
server (tests/smsc/smsc.js), independent of ccorch's client. A Cyrillic text over 70
characters arrives as two concatenated UCS-2 parts, a Latin one as one GSM 7-bit part, the
delivery receipts mark the messages delivered or failed; the SMSC going away and coming
back loses nothing; a resolved case tells its customer."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Node, _with_dbname, free_port, start_node
from tests.sipp import wait_for
from tests.test_agents import _call, _token

SMSC = Path(__file__).parent / "smsc"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (SMSC / "node_modules" / "smpp").exists(),
    reason="the test SMSC needs node and `npm ci` in tests/smsc (scripts/setup.sh does it)",
)
RESOLVED = "Ваша заявка {number} решена. Спасибо, что выбрали ABC Интернет!"


@dataclass
class Smsc:
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as out:  # (the child keeps its own copy of the descriptor)
            self.proc = subprocess.Popen(
                ["node", str(SMSC / "smsc.js"), str(self.port), "ccorch", "secret-1"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert wait_for(lambda: any(e["event"] == "listening" for e in self.events()), 10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [r for r in rows if kind is None or r["event"] == kind]


@pytest.fixture
def sms_node(pg_admin_url: str, tmp_path: Path) -> Iterator[tuple[Node, Smsc, str]]:
    smsc = Smsc(free_port(), tmp_path / "smsc.jsonl")
    smsc.start()
    name = f"ccorch_sms_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = _with_dbname(pg_admin_url, name)
    (tmp_path / "ccorch.toml").write_text(
        f'[sms]\nhost = "127.0.0.1"\nport = {smsc.port}\nsystem_id = "ccorch"\n'
        f'password = "secret-1"\nsource = "ABC"\nmax_backoff_seconds = 2\n'
        f'case_resolved_text = "{RESOLVED}"\n'
    )
    node = start_node(tmp_path, {"DATABASE_URL": db, "CCORCH_CRM_ADMIN_PASSWORD": "x" * 12})
    try:
        yield node, smsc, db
    finally:
        node.kill()
        smsc.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _state(node: Node, token: str, sms_id: int) -> str:
    status, body = _call(node, "GET", f"/api/sms/{sms_id}", None, token)
    assert status == 200, body
    return str(body["state"])


def test_long_cyrillic_text_goes_as_two_concatenated_parts_and_is_delivered(
    sms_node: tuple[Node, Smsc, str],
) -> None:
    node, smsc, db = sms_node
    op = _token(node, "op7001", "agent7001")
    with psycopg.connect(db) as conn:
        ivan = conn.execute("SELECT id FROM customers WHERE name = 'Ivan Petrenko'").fetchone()
    assert ivan is not None
    assert wait_for(lambda: smsc.events("bound"), 15)
    text = (
        "Здравствуйте, Иван! Плановые работы по вашему адресу пройдут завтра с 10 до 14 часов."
        " Приносим извинения."
    )
    assert len(text) > 70
    status, sent = _call(node, "POST", "/api/sms", {"customer_id": ivan[0], "text": text}, op)
    assert status == 202 and sent["state"] in ("queued", "submitted"), sent
    assert wait_for(lambda: _state(node, op, sent["id"]) == "delivered", 15)
    with psycopg.connect(db) as conn:  # the customer's first number
        first = conn.execute(
            "SELECT e164 FROM customer_phones WHERE customer_id = %s ORDER BY id LIMIT 1", ivan
        ).fetchone()
    assert first is not None
    parts = [e for e in smsc.events("submit_sm") if e["destination"] == first[0]]
    assert len(parts) == 2, parts
    assert {p["data_coding"] for p in parts} == {8}  # UCS-2
    assert all(p["esm_class"] & 0x40 for p in parts)  # with a User Data Header
    # the concatenation header: IE 00, length 3, one reference, 2 parts, numbered 1 and 2
    udh = [bytes.fromhex(p["udh"][0]) for p in parts]
    assert [u[0] for u in udh] == [0, 0] and udh[0][2] == udh[1][2]
    assert [(u[3], u[4]) for u in udh] == [(2, 1), (2, 2)]
    assert "".join(p["text"] for p in parts) == text
    assert all(p["registered_delivery"] & 1 and p["source"] == "ABC" for p in parts)
    _, body = _call(node, "GET", f"/api/sms/{sent['id']}", None, op)
    assert body["parts"] == 2 and body["done_at"] is not None

    # a Latin text: one part in the GSM 7-bit alphabet (the SMSC's default coding)
    status, short = _call(
        node, "POST", "/api/sms", {"customer_id": ivan[0], "text": "Your order W19 is ready."}, op
    )
    assert status == 202
    assert wait_for(lambda: _state(node, op, short["id"]) == "delivered", 15)
    [latin] = [e for e in smsc.events("submit_sm") if e["text"] == "Your order W19 is ready."]
    assert latin["data_coding"] == 0 and latin["udh"] == []
    # a number the carrier cannot reach: the receipt says so (a supervisor writes to any)
    boss = _token(node, "sup7009", "agent7009")
    status, lost = _call(node, "POST", "/api/sms", {"phone": "+380441234560", "text": "x"}, boss)
    assert status == 202
    assert wait_for(lambda: _state(node, boss, lost["id"]) == "failed", 15)
    assert _call(node, "GET", f"/api/sms/{lost['id']}", None, boss)[1]["error"] == "UNDELIV"
    # an operator writes to customers, not to any number, and sees only their messages
    status, refused = _call(node, "POST", "/api/sms", {"phone": "+380441234567", "text": "x"}, op)
    assert status == 422 and "customer_id" in refused["fields"]
    other = _token(node, "op7002", "agent7002")
    assert _call(node, "GET", f"/api/sms/{lost['id']}", None, other)[0] == 404


def test_a_message_sent_while_the_smsc_is_away_goes_when_it_is_back(
    sms_node: tuple[Node, Smsc, str],
) -> None:
    node, smsc, _ = sms_node
    boss = _token(node, "sup7009", "agent7009")
    assert wait_for(lambda: smsc.events("bound"), 15)
    smsc.stop()
    status, sent = _call(
        node, "POST", "/api/sms", {"phone": "+380501112233", "text": "Проверка связи"}, boss
    )
    assert status == 202
    time.sleep(1.0)
    assert _state(node, boss, sent["id"]) == "queued"
    bound_before = len(smsc.events("bound"))
    smsc.start()  # the client binds again (its wait doubles up to 2 s here)
    assert wait_for(lambda: len(smsc.events("bound")) > bound_before, 20)
    assert wait_for(lambda: _state(node, boss, sent["id"]) == "delivered", 15)
    assert [e["text"] for e in smsc.events("submit_sm")] == ["Проверка связи"]


def test_a_resolved_case_tells_its_customer_by_sms(sms_node: tuple[Node, Smsc, str]) -> None:
    node, smsc, db = sms_node
    admin = _token(node, "admin", "x" * 12)
    assert wait_for(lambda: smsc.events("bound"), 15)
    with psycopg.connect(db) as conn:
        ivan = conn.execute("SELECT id FROM customers WHERE name = 'Ivan Petrenko'").fetchone()
    assert ivan is not None
    status, case = _call(
        node,
        "POST",
        "/api/cases",
        {"customer_id": ivan[0], "kind": "instant", "subject": "Slow internet"},
        admin,
    )
    assert status == 201, case
    status, moved = _call(
        node, "POST", f"/api/cases/{case['id']}/transition", {"to": "resolved"}, admin
    )
    assert status == 200, moved
    expected = RESOLVED.replace("{number}", str(case["id"]))
    assert wait_for(lambda: any(e["text"] == expected for e in smsc.events("submit_sm")), 15)
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT customer_id, phone = (SELECT e164 FROM customer_phones WHERE customer_id = %s"
            " ORDER BY id LIMIT 1) FROM sms_messages WHERE case_id = %s",
            (ivan[0], case["id"]),
        ).fetchone()
    assert row == (ivan[0], True)


def test_an_operator_texts_the_customer_from_the_desktop(
    sms_node: tuple[Node, Smsc, str], browser: Browser
) -> None:
    from tests.test_desktop import open_app, shot, sign_in, start_shift

    node, smsc, _ = sms_node
    assert wait_for(lambda: smsc.events("bound"), 15)
    page = open_app(browser, SimpleNamespace(node=node))  # type: ignore[arg-type]  # (its node)
    sign_in(page, "op7001", "agent7001")
    start_shift(page, {"tech"})
    page.fill("[data-testid=customer-search]", "Petrenko")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Ivan Petrenko").click()
    expect(page.get_by_test_id("customer-name")).to_have_text("Ivan Petrenko")
    page.click("[data-testid=tab-sms]")
    text = "Иван, ваш новый роутер готов к выдаче в офисе на Хрещатике, 22. Ждём вас до 20:00!"
    page.fill("[data-testid=sms-text]", text)
    expect(page.get_by_test_id("sms-count")).to_have_text(f"{len(text)} characters, 2 SMS")
    page.click("[data-testid=sms-send]")
    expect(page.locator("[data-testid^=sms-state-]").first).to_have_text(
        "delivered", timeout=15_000
    )
    shot(page, "desktop-sms")
    assert "".join(e["text"] for e in smsc.events("submit_sm")) == text


def test_an_sms_campaign_texts_each_contact_its_own_words(
    sms_node: tuple[Node, Smsc, str],
) -> None:
    import base64

    node, smsc, db = sms_node
    boss = _token(node, "sup7009", "agent7009")
    assert wait_for(lambda: smsc.events("bound"), 15)
    status, campaign = _call(
        node,
        "POST",
        "/api/campaigns",
        {"name": "Outage SMS", "mode": "sms",
         "rules": {"window_start": "00:00", "window_end": "23:59",
                   "weekdays": [1, 2, 3, 4, 5, 6, 7]},
         "dialing": {"sms_text": "{name}, по адресу {address} завтра плановые работы."}},
        boss,
    )  # fmt: skip
    assert status == 201, campaign
    people = {
        "380501110001": ("Олена", "Хрещатик, 1"),
        "380501110002": ("Тарас", "Саксаганського, 12"),
        "380501110003": ("Ivan", "Lesi Ukrainky, 7"),
    }
    csv = "phone,name,address\n" + "".join(f'+{p},{n},"{a}"\n' for p, (n, a) in people.items())
    status, imported = _call(
        node,
        "POST",
        f"/api/campaigns/{campaign['id']}/contacts",
        {"file_name": "sms.csv", "format": "csv",
         "content_base64": base64.b64encode(csv.encode()).decode(),
         "mapping": {"phone": "phone", "name": "name", "variables": {"address": "address"}}},
        boss,
    )  # fmt: skip
    assert status == 200 and imported["accepted"] == 3, imported
    cid = campaign["id"]
    assert _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": "running"}, boss)[0] == 200

    def delivered() -> int:
        with psycopg.connect(db) as conn:
            row = conn.execute(
                "SELECT count(*) FROM sms_messages WHERE campaign_id = %s AND state = 'delivered'",
                (cid,),
            ).fetchone()
        return int(row[0]) if row else 0

    assert wait_for(lambda: delivered() == 3, 20)
    got = {e["destination"]: e["text"] for e in smsc.events("submit_sm")}
    assert got == {p: f"{n}, по адресу {a} завтра плановые работы." for p, (n, a) in people.items()}
    assert wait_for(
        lambda: _call(node, "GET", f"/api/campaigns/{cid}", None, boss)[1]["status"] == "finished",
        15,
    )
    _, page = _call(node, "GET", f"/api/campaigns/{cid}", None, boss)
    assert page["attempts"] == {"sent": 3} and page["contacts"] == {"done": 3}
