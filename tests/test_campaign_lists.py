"""Campaign lists (issue 19): CSV and XLSX with a column mapping, every row checked (E.164,
time zone, duplicates, the campaign's and the global do-not-call list), refused rows with
their line and reason and nothing else lost; appending; numbers put on the do-not-call list
later are never dialed. The checker alone, then over HTTP against a real node."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xlsxwriter

from ccorch.dialer import lists
from tests.conftest import Node, start_node
from tests.sipp import DEMO_FLOWS
from tests.test_agents import _call, _token

CSV = """\ufeffФИО;Телефон;Адрес;Часовой пояс
Іван Петренко;067 123 45 67;Київ, Хрещатик 1;
Олена Ковальчук;+380 50 765 43 21;Львів;
Bad Number;12ab;;
Дубль;0671234567;;
Пекин;+86 10 6552 9988;;
Москва;+7 495 123 45 67;;Asia/Novosibirsk
Nowhere;+48 22 123 45 67;;
Bad Zone;0501112233;;Mars/Olympus

Stop;0504445566;;
"""
MAPPING = {
    "phone": "Телефон",
    "name": "ФИО",
    "time_zone": "Часовой пояс",
    "variables": {"address": "Адрес"},
}


def test_every_row_is_accepted_or_refused_with_its_line_and_reason() -> None:
    got = lists.check(
        lists.rows("csv", CSV.encode()),
        MAPPING,
        country="380",
        in_campaign={"380951112233"},
        do_not_call={"380504445566"},
    )
    accepted = {c.phone: c for c in got.accepted}
    assert list(accepted) == ["380671234567", "380507654321", "861065529988", "74951234567"]
    ivan = accepted["380671234567"]
    assert (ivan.line, ivan.name, ivan.time_zone) == (2, "Іван Петренко", "Europe/Kyiv")
    assert ivan.variables == {"address": "Київ, Хрещатик 1"}
    assert accepted["861065529988"].time_zone == "Asia/Shanghai"
    assert accepted["74951234567"].time_zone == "Asia/Novosibirsk"  # the column wins
    refused = {r.line: r for r in got.refused}
    assert set(refused) == {4, 5, 8, 9, 11}, refused
    assert "characters other than digits" in refused[4].reason and refused[4].value == "12ab"
    assert refused[5].reason == "the same number as line 2"
    assert "no time zone known" in refused[8].reason
    assert refused[9].reason.startswith("not a time zone") and refused[9].value == "Mars/Olympus"
    assert refused[11].reason == "on the do-not-call list"  # (line 10 is empty)
    with pytest.raises(lists.ListError, match="no column 'Phone'"):
        lists.check(lists.rows("csv", CSV.encode()), {"phone": "Phone"}, country="380",
                    in_campaign=set(), do_not_call=set())  # fmt: skip
    with pytest.raises(lists.ListError, match="not UTF-8"):
        list(lists.rows("csv", "Телефон\n1".encode("cp1251")))
    with pytest.raises(lists.ListError, match="not an XLSX"):
        list(lists.rows("xlsx", b"PK not really"))


def _xlsx(rows: list[list[Any]]) -> bytes:
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = book.add_worksheet()
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            sheet.write(i, j, value)
    book.close()
    return out.getvalue()


def test_a_spreadsheet_reads_like_the_csv_numbers_typed_as_numbers_too() -> None:
    content = _xlsx([["name", "phone", "amount"], ["李雷", 8613800138000, 12.5],
                     ["Taras", "0671234567", 3]])  # fmt: skip
    got = lists.check(
        lists.rows("xlsx", content),
        {"phone": "phone", "name": "name", "variables": {"amount": "amount"}},
        country="380",
        in_campaign={"380671234567"},
        do_not_call=set(),
    )
    assert [(c.line, c.phone, c.name, c.variables) for c in got.accepted] == [
        (2, "8613800138000", "李雷", {"amount": "12.5"})
    ]
    assert [(r.line, r.reason) for r in got.refused] == [(3, "already in the campaign")]


@pytest.fixture(scope="module")
def node(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    import uuid

    import psycopg

    from tests.conftest import _with_dbname

    name = f"ccorch_lists_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    cwd: Path = tmp_path_factory.mktemp("lists_node")
    (cwd / "flows").mkdir()
    (cwd / "flows" / "queues.toml").write_text('[[queue]]\nname = "general"\nskills = "general"\n')
    shutil.copy(DEMO_FLOWS / "outage-notice-ru.yaml", cwd / "flows")
    n = start_node(
        cwd,
        {"DATABASE_URL": _with_dbname(pg_admin_url, name), "CCORCH_CRM_ADMIN_PASSWORD": "x" * 12},
    )
    try:
        yield n
    finally:
        n.kill()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_supervisor_imports_appends_and_keeps_numbers_off_the_list(node: Node) -> None:
    boss = _token(node, "sup7009", "agent7009")
    status, campaign = _call(
        node,
        "POST",
        "/api/campaigns",
        {"name": "Survey", "mode": "predictive", "queue": "general"},
        boss,
    )
    assert status == 201, campaign
    cid = campaign["id"]
    assert (
        _call(
            node,
            "POST",
            "/api/campaigns",
            {"name": "Survey", "mode": "power", "queue": "general"},
            boss,
        )[0]
        == 409
    )
    status, dnc = _call(node, "POST", "/api/do-not-call", {"phone": "050 444 55 66"}, boss)
    assert (status, dnc["phone"]) == (201, "380504445566")

    def send(name: str, kind: str, content: bytes, mapping: dict[str, Any]) -> tuple[int, Any]:
        body = {
            "file_name": name,
            "format": kind,
            "content_base64": base64.b64encode(content).decode(),
            "mapping": mapping,
        }
        return _call(node, "POST", f"/api/campaigns/{cid}/contacts", body, boss)

    status, got = send("march.csv", "csv", CSV.encode(), MAPPING)
    assert status == 200, got
    # contacts who are customers are linked: as many as identification finds
    customers = sum(
        1
        for number in ("380671234567", "380507654321", "861065529988", "74951234567")
        if _call(node, "GET", f"/api/customers/identify?ani={number}", token=boss)[1]["matches"]
    )
    assert customers >= 1  # Ivan Petrenko at least
    assert (got["accepted"], got["linked_to_customers"]) == (4, customers)
    assert {r["line"] for r in got["refused"]} == {4, 5, 8, 9, 11}
    # appended while it runs: a spreadsheet with one new number and one known
    content = _xlsx([["phone"], ["0931234567"], ["+380 67 123 45 67"]])
    status, got = send("april.xlsx", "xlsx", content, {"phone": "phone"})
    assert (status, got["accepted"]) == (200, 1), got
    assert got["refused"] == [
        {"line": 3, "reason": "already in the campaign", "value": "+380 67 123 45 67"}
    ]
    status, contacts = _call(node, "GET", f"/api/campaigns/{cid}/contacts", token=boss)
    assert status == 200 and len(contacts["items"]) == 5
    by_phone = {c["phone"]: c for c in contacts["items"]}
    assert (by_phone["380931234567"]["source"], by_phone["380931234567"]["source_line"]) == (
        "april.xlsx",
        2,
    )
    assert by_phone["380671234567"]["customer_id"] is not None
    # a number put on this campaign's list now is never dialed
    status, _ = _call(
        node, "POST", "/api/do-not-call", {"phone": "+380507654321", "campaign_id": cid}, boss
    )
    assert status == 201
    status, campaign = _call(node, "GET", f"/api/campaigns/{cid}", token=boss)
    assert campaign["contacts"] == {"pending": 4, "dnc": 1}, campaign
    # a file that is not what it says, or a mapping without the phone: 422, nothing kept
    status, bad = send("x.csv", "xlsx", b"not a workbook", {"phone": "phone"})
    assert status == 422 and "XLSX" in bad["fields"]["content_base64"], bad
    status, bad = send("x.csv", "csv", CSV.encode(), {"name": "ФИО"})
    assert status == 422 and "phone column" in bad["fields"]["content_base64"], bad
    status, campaign = _call(node, "GET", f"/api/campaigns/{cid}", token=boss)
    assert sum(campaign["contacts"].values()) == 5
    # the calling rules come with the campaign, checked; the defaults fill the rest
    rules = {"window_start": "10:00", "window_end": "19:00", "weekdays": [1, 2, 3, 4, 5]}
    status, other = _call(
        node,
        "POST",
        "/api/campaigns",
        {
            "name": "Notices",
            "mode": "broadcast",
            "rules": rules,
            "dialing": {"flow": "outage-notice-ru"},
        },
        boss,
    )
    assert status == 201, other
    assert other["rules"]["window_start"] == "10:00" and other["rules"]["retries"]["busy"] == {
        "attempts": 3,
        "interval_minutes": 10.0,
    }
    status, bad = _call(
        node,
        "POST",
        "/api/campaigns",
        {"name": "Bad", "mode": "power", "queue": "general", "rules": {"window_start": "9am"}},
        boss,
    )
    assert status == 422 and "rules.window_start" in bad["fields"], bad
    # who may be called now: the pending contacts inside their own window (the test runs at
    # any hour: compare with the rules' own answer for each contact)
    import datetime as dt
    from zoneinfo import ZoneInfo

    from ccorch.dialer.rules import CallingRules, may_call

    status, due = _call(node, "GET", f"/api/campaigns/{cid}/due", token=boss)
    assert status == 200, due
    at = dt.datetime.fromisoformat(due["at"])
    status, days = _call(node, "GET", "/api/holidays", token=boss)  # the center's
    assert status == 200, days
    off = [dt.date.fromisoformat(d["day"]) for d in days["items"]]
    expected = {
        c["phone"]
        for c in contacts["items"]
        if c["phone"] != "380507654321"  # on the do-not-call list now
        and may_call(CallingRules(), ZoneInfo(c["time_zone"]), at, off)
    }
    assert {c["phone"] for c in due["items"]} == expected
    # start, pause, resume, stop; nothing after stop
    for to, code in (("running", 200), ("paused", 200), ("running", 200), ("stopped", 200),
                     ("running", 409)):  # fmt: skip
        status, got = _call(node, "PATCH", f"/api/campaigns/{cid}", {"status": to}, boss)
        assert status == code, (to, got)
    assert got["message"].startswith("a stopped campaign can go to nothing"), got
    # operators may not touch campaigns
    op = _token(node, "op7001", "agent7001")
    assert _call(node, "GET", "/api/campaigns", token=op)[0] == 403
