"""The supervisor's console (issue 18) in a real browser: Debian's headless Chromium, the
node with PostgreSQL, a SIPp operator phone, a SIPp caller through the trunk, and a SIPp
carrier answering the node's OPTIONS probes (then not). The wallboard changes when a call
queues and when it is answered, without a reload; the supervisor forces an operator Not
ready and Ready again (audited); a trunk alarm appears when the carrier stops answering and
clears when it answers again. Screenshots go to ``var/screenshots/``."""

from __future__ import annotations

import shutil
import threading
import urllib.request
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.sipp import Uas, free_udp_port, wait_for
from tests.test_agents import _call, _token
from tests.test_desktop import open_app, shot, sign_in
from tests.test_inbound import _center
from tests.test_prometheus import one_operator_queues

pytestmark = pytest.mark.slow

QUEUES = one_operator_queues(10)  # the test's caller waits a few seconds


def _carrier(port: int, cwd: Path) -> Uas:
    """A carrier that answers the node's OPTIONS probes (until killed, five minutes at most)."""
    return Uas("options_uas.xml", port=port, cwd=cwd, timeout=300)


def _tab(page: Page, name: str) -> None:
    page.get_by_test_id(f"sup-tab-{name}").click()


def test_the_console_shows_the_center_live_forces_states_and_raises_alarms(
    pg_admin_url: str, tmp_path: Path, browser: Browser
) -> None:
    carrier_port = free_udp_port()
    carrier = _carrier(carrier_port, tmp_path)
    probe = (
        f'[[trunk]]\nname = "probe"\nhost = "127.0.0.1"\nport = {carrier_port}\n'
        "options_interval = 1\n"
    )
    listening: list[threading.Thread] = []
    with _center(pg_admin_url, tmp_path, queues=QUEUES, trunks=probe) as center:
        phone_port = center.register("7003")
        assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) == 1, 10)
        page = open_app(browser, center)
        sign_in(page, "sup7009", "agent7009")
        page.wait_for_selector("[data-testid=supervisor]")

        # the wallboard: nobody waits, nothing offered yet
        board = page.get_by_test_id("queue-general")
        expect(board.get_by_test_id("waiting-general")).to_contain_text("0")
        expect(board.get_by_test_id("offered-general")).to_contain_text("0 / 0")
        expect(page.get_by_text("⟦")).to_have_count(0)  # every label has its text

        # trunks and phones: the carrier answers, 7003 is registered
        _tab(page, "lines")
        expect(page.get_by_test_id("trunk-probe-status")).to_have_text("Up")
        expect(page.get_by_test_id("phone-7003")).to_contain_text("Registered")
        shot(page, "supervisor-lines")

        # the supervisor makes 7003 Not ready: the grid says so, and who did it is stored
        _tab(page, "agents")
        expect(page.get_by_test_id("agent-7003-state")).to_have_text("Ready")
        page.get_by_test_id("force-not-ready-7003").click()
        expect(page.get_by_test_id("agent-7003-state")).to_have_text(
            "Not ready · Set by supervisor"
        )
        with psycopg.connect(center.db) as conn:
            row = conn.execute(
                """SELECT l.state, l.reason, u.login FROM agent_state_log l
                   JOIN users u ON u.id = l.by_user_id
                   WHERE l.extension = '7003' ORDER BY l.id DESC LIMIT 1"""
            ).fetchone()
            assert row == ("not_ready", "supervisor", "sup7009"), row
            audited = conn.execute(
                "SELECT count(*) FROM audit_log WHERE action = 'force' AND entity_id = '7003'"
            ).fetchone()
            assert audited is not None and audited[0] == 1

        # a caller chooses the general queue: it waits, and the wallboard shows it live
        _tab(page, "wallboard")
        caller, caller_sipp = center.caller()
        try:
            caller.listen(1.5)
            caller.press("2")
            listening.append(threading.Thread(target=caller.listen, args=(12.0,)))
            listening[-1].start()
            expect(board.get_by_test_id("waiting-general")).to_contain_text("1")
            expect(board.get_by_test_id("waiting-general")).to_have_class("tile level-warn")
            shot(page, "supervisor-wallboard-waiting")

            # Ready again: the call goes to 7003's phone, which answers (and hangs up later)
            agent = Uas("agent_hangup.xml", port=phone_port, cwd=center.cwd, extra=["-d", "3000"])
            _tab(page, "agents")
            page.get_by_test_id("force-ready-7003").click()
            expect(page.get_by_test_id("agent-7003-call")).to_contain_text("0671234567")
            shot(page, "supervisor-agents")
            _tab(page, "wallboard")
            expect(board.get_by_test_id("waiting-general")).to_contain_text("0")
            expect(board.get_by_test_id("offered-general")).to_contain_text("1 / 1")
            # it waited a few seconds, within the queue's 10 s: in service
            expect(board.get_by_test_id("sl-today-general")).to_contain_text("100%")
            expect(board.get_by_test_id("sl-today-general")).to_have_class("tile level-ok")
            shot(page, "supervisor-wallboard")
            assert agent.wait(30).ok
            assert caller_sipp.wait(30) == 0
        finally:
            for t in listening:
                t.join(15)
            caller.sock.close()
            if caller_sipp.poll() is None:
                caller_sipp.kill()
                caller_sipp.wait(10)

        # the call's recording, found by the caller's number, plays in the browser and seeks
        _tab(page, "recordings")
        page.get_by_test_id("rec-ani").fill("671234567")
        page.get_by_test_id("rec-search").click()
        row = page.locator("tr[data-testid^=rec-]")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("0671234567")
        expect(row).to_contain_text("7003")
        rec_id = (row.get_attribute("data-testid") or "").removeprefix("rec-")
        row.get_by_test_id(f"rec-play-{rec_id}").click()
        audio = page.get_by_test_id(f"rec-audio-{rec_id}")
        assert wait_for(lambda: audio.evaluate("a => a.currentTime") > 0.3, 10), audio.evaluate(
            "a => [a.readyState, a.networkState, a.error && a.error.code]"
        )
        duration = audio.evaluate("a => a.duration")
        assert 2.5 <= duration <= 10, duration  # about the 3 s the operator talked
        audio.evaluate("a => { a.currentTime = a.duration - 0.5; }")
        assert wait_for(lambda: audio.evaluate("a => a.currentTime") >= duration - 0.6, 5)
        shot(page, "supervisor-recordings")
        token = _token(center.node, "sup7009", "agent7009")
        req = urllib.request.Request(
            f"{center.node.base}/api/recordings/{rec_id}",
            headers={"authorization": f"Bearer {token}", "range": "bytes=100-199"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 206 and len(r.read()) == 100
            assert r.headers["content-range"].startswith("bytes 100-199/")
        # once it belongs to a complaint, only the complaints role and admins find it
        with psycopg.connect(center.db, autocommit=True) as conn:
            conn.execute(
                """WITH k AS (INSERT INTO cases (kind, status, subject, confidential, created_at)
                              VALUES ('instant', 'open', 'complaint', true, now()) RETURNING id)
                   UPDATE interactions SET case_id = (SELECT id FROM k)
                   WHERE recording_id = %s""",
                (int(rec_id),),
            )
        status, found = _call(center.node, "GET", "/api/recordings?ani=671234567", None, token)
        assert (status, found["items"]) == (200, []), found
        admin = _token(center.node, "admin", "x" * 12)
        status, found = _call(center.node, "GET", "/api/recordings?ani=671234567", None, admin)
        assert [h["id"] for h in found["items"]] == [int(rec_id)], found

        # the voicemail inbox: a message (a copy of that recording, as the IVR would file
        # it, with its case) is given to 7003's operator and marked handled
        with psycopg.connect(center.db, autocommit=True) as conn:
            path = conn.execute(
                "SELECT path FROM recordings WHERE id = %s", (int(rec_id),)
            ).fetchone()
            assert path is not None
            message = Path(path[0]).with_name("voicemail-test.wav")
            shutil.copy(path[0], message)
            vm = conn.execute(
                """WITH k AS (INSERT INTO cases (kind, status, subject, created_at,
                                              callback_required)
                              VALUES ('instant', 'open', 'Voicemail from 0509998877', now(), true)
                              RETURNING id)
                   INSERT INTO recordings (path, kind, case_id)
                   SELECT %s, 'voicemail', id FROM k RETURNING id, case_id""",
                (str(message),),
            ).fetchone()
            assert vm is not None
        _tab(page, "voicemail")
        row = page.get_by_test_id(f"vm-{vm[0]}")
        expect(row.get_by_test_id(f"vm-{vm[0]}-case")).to_contain_text(f"#{vm[1]} · open")
        row.get_by_test_id(f"vm-{vm[0]}-play").click()
        audio = page.get_by_test_id(f"vm-{vm[0]}-audio")
        assert wait_for(lambda: audio.evaluate("a => a.currentTime") > 0.3, 10)
        row.get_by_test_id(f"vm-{vm[0]}-assign").select_option(label="Oksana Shevchenko (7003)")
        shot(page, "supervisor-voicemail")
        row.get_by_test_id(f"vm-{vm[0]}-handled").click()
        expect(page.get_by_test_id(f"vm-{vm[0]}")).to_have_count(0)  # handled: out of the inbox
        with psycopg.connect(center.db) as conn:
            case = conn.execute(
                "SELECT k.status, u.login FROM cases k JOIN users u ON u.id = k.assignee_id"
                " WHERE k.id = %s",
                (vm[1],),
            ).fetchone()
        assert case == ("resolved", "op7003"), case

        # today's queue report: the call is in it, and the same report downloads as a file
        _tab(page, "reports")
        page.get_by_test_id("report-show").click()
        totals = page.get_by_test_id("report-totals")
        expect(totals).to_contain_text("Total")
        expect(page.get_by_test_id("report-table")).to_contain_text("general")
        shot(page, "supervisor-report")
        href = page.get_by_test_id("report-xlsx").get_attribute("href") or ""
        got = page.request.get(center.node.base + href)
        assert got.status == 200 and got.body()[:2] == b"PK", got.status  # a zip: XLSX
        got = page.request.get(center.node.base + href.replace("xlsx", "csv"))
        assert got.body().startswith("\ufeff".encode()), got.body()[:20]
        assert "general,1,1,0" in got.body().decode("utf-8-sig"), got.body()

        # the carrier stops answering: the trunk alarm appears, live
        expect(page.get_by_test_id("alarm-count")).to_have_count(0)  # none until now
        carrier.kill()
        expect(page.get_by_test_id("alarm-count")).to_have_text("1", timeout=20_000)
        _tab(page, "alarms")
        expect(page.get_by_test_id("alarm-trunk_down-probe")).to_contain_text("Trunk down")
        shot(page, "supervisor-alarm")
        _tab(page, "lines")
        expect(page.get_by_test_id("trunk-probe-status")).to_have_text("Down")

        # it answers again: the alarm clears, and the log keeps when it was raised and cleared
        carrier = _carrier(carrier_port, tmp_path)
        try:
            expect(page.get_by_test_id("trunk-probe-status")).to_have_text("Up", timeout=20_000)
            _tab(page, "alarms")
            expect(page.get_by_test_id("no-alarms")).to_be_visible()
            expect(page.get_by_test_id("alarm-count")).to_have_count(0)
            log_rows = page.locator("[data-testid^=alarm-log-]")
            expect(log_rows).to_have_count(1)
            expect(log_rows.first).not_to_contain_text("still active")
            shot(page, "supervisor-alarm-log")
        finally:
            carrier.kill()
        page.context.close()
