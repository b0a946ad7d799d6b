"""The e-mail channel (issue 22) against a real mail server: GreenMail standalone (SMTP and
IMAP, Java, from Maven Central) with the center's mailbox and the customers' own. Customers
write with the standard library's smtplib and read their mail with imaplib, independent of
the libraries the node uses. Parsing, threading headers and rules are also tested without
any server."""

from __future__ import annotations

import base64
import datetime as dt
import email
import imaplib
import shutil
import smtplib
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, expect

from ccorch.api.validation import ValidationFailed
from ccorch.email.message import compose, html_to_text, parse, reply_subject
from ccorch.email.rules import Rule, checked_rules, classify
from tests.conftest import Node, _with_dbname, free_port, start_node
from tests.sipp import wait_for
from tests.test_agents import _call, _token
from tests.test_desktop import open_app, shot, sign_in, start_shift

GREENMAIL = Path(__file__).parent.parent / ".cache" / "greenmail-standalone-2.1.3.jar"
CENTER = "center@ccorch.test"
MARIA = "maria.sydorenko@example.com"  # on Maria Sydorenko's card in the demo
STRANGER = "someone@example.org"
ADMIN = "x" * 12

# --- without a server ------------------------------------------------------------------


def _mail(**headers: str) -> EmailMessage:
    msg = EmailMessage()
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    return msg


def test_a_message_is_read_with_its_threading_headers_text_and_attachments() -> None:
    msg = _mail(
        From="Марія Сидоренко <Maria.Sydorenko@Example.com>",
        To="Центр <center@ccorch.test>",
        Subject="Нет света на Садовой",
        Message_ID="<m3@example.com>",
        In_Reply_To="<r2@ccorch.test>",
        References="<m1@example.com> <r2@ccorch.test>",
        Date="Mon, 07 Dec 2026 10:00:00 +0200",
    )
    msg.set_content("Со вчерашнего вечера нет света.\nДом 12.")
    msg.add_attachment(
        b"\x89PNG...", maintype="image", subtype="png", filename="../../etc/фото.png"
    )
    mail = parse(msg.as_bytes())
    assert (mail.from_addr, mail.from_name) == (MARIA, "Марія Сидоренко")
    assert mail.to_addrs == [CENTER]
    assert mail.subject == "Нет света на Садовой"
    assert mail.text.strip() == "Со вчерашнего вечера нет света.\nДом 12."
    assert mail.message_id == "m3@example.com"
    assert mail.thread_ids == ["r2@ccorch.test", "m1@example.com"]  # the nearest first
    assert mail.sent_at == dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
    [a] = mail.attachments
    assert (a.filename, a.content_type, a.data) == ("фото.png", "image/png", b"\x89PNG...")
    assert not mail.auto_reply


def test_an_html_only_message_gives_its_text_and_one_without_a_message_id_a_stable_one() -> None:
    msg = _mail(From="a@example.org", Subject="=?utf-8?b?5YGc55S1?=")
    msg.set_content(
        "<html><head><style>p{}</style></head><body><p>No power</p><p>since 9&nbsp;am"
        "<br>house&nbsp;12</p><script>x()</script></body></html>",
        subtype="html",
    )
    raw = msg.as_bytes()
    mail = parse(raw)
    assert mail.subject == "停电"
    assert mail.text == "No power\n\nsince 9 am\nhouse 12"
    assert mail.message_id.endswith("@no-message-id") and mail.message_id == parse(raw).message_id
    assert html_to_text("<div>a</div><div>b</div>") == "a\n\nb"


def test_an_out_of_office_answer_is_marked_and_a_message_without_sender_refused() -> None:
    auto = _mail(From="a@example.org", Auto_Submitted="auto-replied", Subject="Out of office")
    auto.set_content("back on Monday")
    assert parse(auto.as_bytes()).auto_reply
    with pytest.raises(ValueError, match="no sender"):
        parse(b"Subject: hello\r\n\r\nno From at all\r\n")


def test_a_reply_is_threaded_under_the_message_it_answers() -> None:
    assert reply_subject("RE: Fwd: Re: Нет света [#41]", 41) == "Re: Нет света [#41]"
    assert reply_subject("", 7) == "Re: (no subject) [#7]"
    msg = compose(
        sender=CENTER,
        sender_name="City Power",
        to=MARIA,
        subject="Re: No power [#41]",
        text="Power returns at 18:00.",
        in_reply_to="m3@example.com",
        references=["m1@example.com", "r2@ccorch.test"],
        now=dt.datetime(2026, 12, 7, 10, tzinfo=dt.UTC),
    )
    back = parse(msg.as_bytes())
    assert back.in_reply_to == "m3@example.com"
    assert back.references == ["m1@example.com", "r2@ccorch.test", "m3@example.com"]
    assert back.from_addr == CENTER and back.to_addrs == [MARIA]
    assert back.message_id.endswith("@ccorch.test")


def test_rules_classify_by_the_first_match_and_a_bad_rule_is_refused_with_its_index() -> None:
    rules = checked_rules(
        {
            "rules": [
                {
                    "field": "subject",
                    "pattern": "complain|жалоб",
                    "topic_id": 3,
                    "kind": "escalation",
                },
                {"field": "any", "pattern": r"outage|отключ", "topic_id": 2},
            ]
        }
    )
    mail = parse(b"From: a@example.org\r\nSubject: Complaint\r\n\r\nan outage again\r\n")
    assert classify(rules, mail) == Rule("subject", "complain|жалоб", 3, "escalation")
    mail = parse(b"From: a@example.org\r\nSubject: hi\r\n\r\nan OUTAGE again\r\n")
    assert classify(rules, mail) == Rule("any", "outage|отключ", 2)
    assert classify(rules, parse(b"From: a@example.org\r\nSubject: hi\r\n\r\nthanks\r\n")) is None
    with pytest.raises(ValidationFailed) as e:
        checked_rules(
            {"rules": [{"field": "any", "pattern": "ok"}, {"field": "any", "pattern": "(("}]}
        )
    assert list(e.value.fields) == ["rules[1].pattern"]
    with pytest.raises(ValidationFailed) as e:
        checked_rules({"rules": [{"field": "cc", "pattern": "x"}]})
    assert list(e.value.fields) == ["rules[0].field"]


# --- against GreenMail -----------------------------------------------------------------


class MailServer:
    def __init__(self, log: Path) -> None:
        self.smtp = free_port()
        self.imap = free_port()
        self.log = log
        users = (
            "center:secret@ccorch.test,maria.sydorenko:secret@example.com,"
            "someone:secret@example.org,petro:secret@example.net"
        )
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
                 "-Dgreenmail.smtp.hostname=127.0.0.1", f"-Dgreenmail.smtp.port={self.smtp}",
                 "-Dgreenmail.imap.hostname=127.0.0.1", f"-Dgreenmail.imap.port={self.imap}",
                 f"-Dgreenmail.users={users}", "-Dgreenmail.verbose=false",
                 "-jar", str(GREENMAIL)],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        assert wait_for(lambda: "Started imap" in log.read_text(), 30), log.read_text()

    def send(self, msg: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=10) as s:
            s.send_message(msg)

    def inbox(self, login: str) -> list[EmailMessage]:
        with imaplib.IMAP4("127.0.0.1", self.imap) as box:
            box.login(login, "secret")
            box.select("INBOX")
            _, data = box.search(None, "ALL")
            out = []
            for num in data[0].split():
                _, parts = box.fetch(num, "(BODY.PEEK[])")
                raw = parts[0][1]  # type: ignore[index]
                out.append(email.message_from_bytes(raw, policy=policy.default))
            return out  # type: ignore[return-value]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def mail(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if shutil.which("java") is None or not GREENMAIL.exists():
        pytest.skip("GreenMail needs java and the jar scripts/setup.sh fetches into .cache/")
    cwd = tmp_path_factory.mktemp("email")
    server = MailServer(cwd / "greenmail.log")
    name = f"ccorch_mail_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db = _with_dbname(pg_admin_url, name)
    (cwd / "ccorch.toml").write_text(
        f'[email]\naddress = "{CENTER}"\ndisplay_name = "City Power Grid"\n'
        f'imap_host = "127.0.0.1"\nimap_port = {server.imap}\nimap_security = "plain"\n'
        f'imap_user = "center"\nimap_password = "secret"\npoll_seconds = 0.3\n'
        f'smtp_host = "127.0.0.1"\nsmtp_port = {server.smtp}\nsmtp_security = "plain"\n'
    )
    node = start_node(cwd, {"DATABASE_URL": db, "CCORCH_CRM_ADMIN_PASSWORD": ADMIN})
    state = {"node": node, "server": server, "db": db, "cwd": cwd}
    try:
        state["op"] = _token(node, "op7003", "agent7003")
        state["admin"] = _token(node, "admin", ADMIN)
        yield state
    finally:
        state["node"].kill()  # (the restart test replaces it)
        server.stop()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _thread_of(node: Node, token: str, message_id: str, timeout: float = 20) -> dict[str, Any]:
    """The thread holding the message with this Message-ID, once the node has read it."""
    found: dict[str, Any] = {}

    def read() -> bool:
        status, page = _call(node, "GET", "/api/email/threads", None, token)
        assert status == 200, page
        for t in page["items"]:
            _, th = _call(node, "GET", f"/api/email/threads/{t['case_id']}", None, token)
            if any(m["message_id"] == message_id for m in th["messages"]):
                found.update(th)
                return True
        return False

    assert wait_for(read, timeout), f"{message_id} never became a case"
    return found


def _sent(node: Node, token: str, case_id: int, email_id: int) -> dict[str, Any]:
    def state() -> str:
        _, th = _call(node, "GET", f"/api/email/threads/{case_id}", None, token)
        return next(m["state"] for m in th["messages"] if m["id"] == email_id)

    assert wait_for(lambda: state() == "sent", 20), state()
    _, th = _call(node, "GET", f"/api/email/threads/{case_id}", None, token)
    return th


def _download(node: Node, token: str, attachment_id: int) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(
        f"{node.base}/api/email/attachments/{attachment_id}",
        headers={"authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_a_customers_email_becomes_her_case_and_the_operators_reply_arrives_on_the_thread(
    mail: dict[str, Any],
) -> None:
    node, server, op = mail["node"], mail["server"], mail["op"]
    photo = bytes(range(256)) * 40
    first = _mail(From=f"Maria Sydorenko <{MARIA}>", To=CENTER,
                  Subject="No power on Sadova St since last night",
                  Message_ID=make_msgid(domain="example.com"))  # fmt: skip
    first.set_content("The whole house 12 has no power. A photo of the meter is attached.")
    first.add_attachment(photo, maintype="image", subtype="jpeg", filename="meter.jpg")
    server.send(first)
    first_id = first["Message-ID"].strip("<>")

    thread = _thread_of(node, op, first_id)
    case = thread["case"]
    # identified by the address on her card, classified by the demo's rule
    assert thread["customer"]["name"] == "Maria Sydorenko"
    status, topics = _call(node, "GET", "/api/topics", None, op)
    topic = {t["id"]: t["name"] for t in topics["items"]}
    assert topic[case["topic_id"]] == "Outages" and case["status"] == "open"
    [message] = thread["messages"]
    assert message["direction"] == "in" and message["from"] == MARIA
    [att] = message["attachments"]
    assert (att["filename"], att["size"]) == ("meter.jpg", len(photo))
    status, data, headers = _download(node, op, att["id"])
    assert status == 200 and data == photo
    assert headers["Content-Disposition"].startswith("attachment;")
    # the case is on her card and the e-mail in her history
    cid = thread["customer"]["id"]
    _, cases = _call(node, "GET", f"/api/customers/{cid}/cases", None, op)
    assert case["id"] in [c["id"] for c in cases["items"]]
    _, history = _call(node, "GET", f"/api/customers/{cid}/history", None, op)
    assert any(i["channel"] == "email" and i["case_id"] == case["id"] for i in history["items"])
    # it waits in the unanswered list
    _, waiting = _call(node, "GET", "/api/email/threads?unanswered=true", None, op)
    assert case["id"] in [t["case_id"] for t in waiting["items"]]

    # the operator answers, with a document attached
    status, sent = _call(
        node, "POST", f"/api/email/threads/{case['id']}/reply",
        {"text": "Power returns today by 18:00. We are sorry.",
         "attachments": [{"filename": "schedule.pdf", "content_type": "application/pdf",
                          "data": base64.b64encode(b"%PDF-1.4 schedule").decode()}]},
        op,
    )  # fmt: skip
    assert status == 202, sent
    assert sent["to"] == MARIA
    assert sent["subject"] == f"Re: No power on Sadova St since last night [#{case['id']}]"
    _sent(node, op, case["id"], sent["id"])
    assert wait_for(lambda: len(server.inbox("maria.sydorenko")) == 1, 15)
    [answer] = server.inbox("maria.sydorenko")
    assert answer["In-Reply-To"] == f"<{first_id}>"
    assert f"<{first_id}>" in answer["References"]
    assert answer["Subject"] == sent["subject"]
    assert CENTER in answer["From"] and "City Power Grid" in answer["From"]
    assert "Power returns today by 18:00." in answer.get_body(("plain",)).get_content()
    [pdf] = list(answer.iter_attachments())
    assert pdf.get_filename() == "schedule.pdf" and pdf.get_content() == b"%PDF-1.4 schedule"
    _, waiting = _call(node, "GET", "/api/email/threads?unanswered=true", None, op)
    assert case["id"] not in [t["case_id"] for t in waiting["items"]]

    # the operator resolves the case; Maria answers the reply: the same case opens again
    status, _ = _call(node, "POST", f"/api/cases/{case['id']}/transition", {"to": "resolved"}, op)
    assert status == 200
    away = _mail(From=MARIA, To=CENTER, Subject=f"Out of office: {answer['Subject']}",
                 Message_ID=make_msgid(domain="example.com"), Auto_Submitted="auto-replied",
                 In_Reply_To=answer["Message-ID"])  # fmt: skip
    away.set_content("I am away until Monday.")
    server.send(away)
    thread = _thread_of(node, op, away["Message-ID"].strip("<>"))
    assert thread["case"]["id"] == case["id"] and thread["case"]["status"] == "resolved"
    again = _mail(From=MARIA, To=CENTER, Subject=f"Re: {answer['Subject']}",
                  Message_ID=make_msgid(domain="example.com"),
                  In_Reply_To=answer["Message-ID"],
                  References=f"{answer['References']} {answer['Message-ID']}")  # fmt: skip
    again.set_content("It is 19:00 and still dark.")
    server.send(again)
    thread = _thread_of(node, op, again["Message-ID"].strip("<>"))
    assert thread["case"]["id"] == case["id"] and thread["case"]["status"] == "open"
    assert [m["direction"] for m in thread["messages"]] == ["in", "out", "in", "in"]
    assert thread["case"]["transitions"][-1]["comment"] == "the customer wrote again"
    # what supervisors' Prometheus reads
    with urllib.request.urlopen(node.base + "/metrics", timeout=10) as r:
        scraped = r.read().decode()
    series = dict(
        line.rsplit(" ", 1) for line in scraped.splitlines() if line.startswith("cc_email_")
    )
    assert series["cc_email_mailbox_up"] == "1.0"
    assert float(series['cc_email_received_total{kind="new"}']) >= 1
    assert float(series['cc_email_received_total{kind="thread"}']) >= 2
    assert float(series['cc_email_replies_total{state="sent"}']) >= 1


def test_an_unknown_sender_is_classified_by_the_operator_and_a_guessed_case_tag_is_ignored(
    mail: dict[str, Any],
) -> None:
    node, server, op, admin = mail["node"], mail["server"], mail["op"], mail["admin"]
    msg = _mail(From=f"Someone <{STRANGER}>", To=CENTER, Subject="A question",
                Message_ID=make_msgid(domain="example.org"))  # fmt: skip
    msg.set_content("When do you read the meters in Hlevakha?")
    server.send(msg)
    thread = _thread_of(node, op, msg["Message-ID"].strip("<>"))
    case = thread["case"]
    assert thread["customer"] is None
    # "meters" matched the readings rule; the operator puts it under outages and on Petro
    _, topics = _call(node, "GET", "/api/topics", None, op)
    ids = {t["name"]: t["id"] for t in topics["items"]}
    assert case["topic_id"] == ids["Meter readings"]
    _, found = _call(node, "GET", "/api/customers/search?q=Petro", None, op)
    petro = found["matches"][0]["customer_id"]
    status, changed = _call(node, "PATCH", f"/api/email/threads/{case['id']}",
                            {"topic_id": ids["Outages"], "customer_id": petro}, op)  # fmt: skip
    assert status == 200, changed
    assert changed["case"]["topic_id"] == ids["Outages"] and changed["customer"]["id"] == petro
    _, history = _call(node, "GET", f"/api/customers/{petro}/history", None, op)
    assert any(i["channel"] == "email" and i["case_id"] == case["id"] for i in history["items"])

    # a stranger naming Maria's case in the subject, without threading headers, gets a case
    # of their own
    _, maria_threads = _call(node, "GET", "/api/email/threads", None, op)
    maria_case = next(t["case_id"] for t in maria_threads["items"] if t["from"] == MARIA)
    guess = _mail(From=STRANGER, To=CENTER, Subject=f"Re: hello [#{maria_case}]",
                  Message_ID=make_msgid(domain="example.org"))  # fmt: skip
    guess.set_content("let me in")
    server.send(guess)
    other = _thread_of(node, op, guess["Message-ID"].strip("<>"))
    assert other["case"]["id"] != maria_case

    # while Maria's client dropping the headers but keeping the tag stays in her case
    tagged = _mail(From=MARIA, To=CENTER, Subject=f"Re: no power [#{maria_case}]",
                   Message_ID=make_msgid(domain="example.com"))  # fmt: skip
    tagged.set_content("and the neighbours too")
    server.send(tagged)
    assert _thread_of(node, op, tagged["Message-ID"].strip("<>"))["case"]["id"] == maria_case

    # a bad rule set is refused whole; a reply on a case without an address is a 409
    status, body = _call(node, "PUT", "/api/email/rules",
                         {"rules": [{"field": "any", "pattern": "[unclosed"}]}, admin)  # fmt: skip
    assert status == 422 and "rules[0].pattern" in body["fields"]
    _, rules = _call(node, "GET", "/api/email/rules", None, admin)
    assert len(rules["rules"]) == 3
    status, body = _call(node, "POST", "/api/cases",
                         {"kind": "instant", "subject": "walk-in"}, op)  # fmt: skip
    status, body = _call(node, "POST", f"/api/email/threads/{body['id']}/reply", {"text": "hi"}, op)
    assert status == 409 and "no e-mail address" in body["message"], body


def test_a_message_without_a_sender_is_kept_as_an_unreadable_case_no_reply_can_go_to(
    mail: dict[str, Any],
) -> None:
    node, server, op = mail["node"], mail["server"], mail["op"]
    raw = b"Subject: hello\r\nMessage-ID: <nofrom-1@example.org>\r\n\r\nno From at all\r\n"
    with smtplib.SMTP("127.0.0.1", server.smtp, timeout=10) as s:
        s.sendmail("bounce@example.org", [CENTER], raw)
    found: dict[str, Any] = {}

    def kept() -> bool:
        _, page = _call(node, "GET", "/api/email/threads", None, op)
        for t in page["items"]:
            if t["subject"] == "(an unreadable message)":
                found.update(t)
                return True
        return False

    assert wait_for(kept, 20)
    _, th = _call(node, "GET", f"/api/email/threads/{found['case_id']}", None, op)
    [m] = th["messages"]
    assert m["from"] == "" and "no sender address" in m["text"]
    status, body = _call(node, "POST", f"/api/email/threads/{found['case_id']}/reply",
                         {"text": "to whom?"}, op)  # fmt: skip
    assert status == 409 and "no e-mail address" in body["message"]
    with psycopg.connect(mail["db"]) as conn:
        row = conn.execute("SELECT raw FROM email_messages WHERE id = %s", (m["id"],)).fetchone()
    assert row is not None and b"no From at all" in bytes(row[0])


def test_confidential_mail_and_its_attachments_stay_with_the_complaints_role(
    mail: dict[str, Any],
) -> None:
    node, server, op, admin = mail["node"], mail["server"], mail["op"], mail["admin"]
    _, rules = _call(node, "GET", "/api/email/rules", None, admin)
    confidential = [{"field": "subject", "pattern": "harassment", "confidential": True,
                     "kind": "escalation"}] + rules["rules"]  # fmt: skip
    status, body = _call(node, "PUT", "/api/email/rules", {"rules": confidential}, admin)
    assert status == 200, body
    msg = _mail(From=MARIA, To=CENTER, Subject="Harassment by your fitter",
                Message_ID=make_msgid(domain="example.com"))  # fmt: skip
    msg.set_content("details attached")
    msg.add_attachment(b"statement", maintype="text", subtype="plain", filename="statement.txt")
    server.send(msg)
    thread = _thread_of(node, admin, msg["Message-ID"].strip("<>"))
    case_id = thread["case"]["id"]
    assert thread["case"]["confidential"] and thread["case"]["kind"] == "escalation"
    att = thread["messages"][0]["attachments"][0]["id"]
    # the operator sees neither the thread, nor the attachment, nor it in the list
    status, _ = _call(node, "GET", f"/api/email/threads/{case_id}", None, op)
    assert status == 404
    status, _, _ = _download(node, op, att)
    assert status == 404
    _, page = _call(node, "GET", "/api/email/threads", None, op)
    assert case_id not in [t["case_id"] for t in page["items"]]
    status, _ = _call(node, "POST", f"/api/email/threads/{case_id}/reply", {"text": "x"}, op)
    assert status == 404
    status, _, _ = _download(node, admin, att)
    assert status == 200
    # put the rules back for the other tests
    _call(node, "PUT", "/api/email/rules", {"rules": rules["rules"]}, admin)


def test_the_operator_links_an_unknown_sender_and_replies_with_a_file_from_the_mail_tab(
    mail: dict[str, Any], browser: Browser
) -> None:
    """The desktop's Mail tab, in Chromium: Petro writes from an address not on his card;
    the operator finds him and links the thread to him, downloads his attachment, and
    answers with a file. The answer reaches Petro's mailbox on the thread, and his next
    message brings the thread back to the list while the operator watches."""
    node, server = mail["node"], mail["server"]
    msg = _mail(From="Petro Koval <petro@example.net>", To=CENTER, Subject="Question about my bill",
                Message_ID=make_msgid(domain="example.net"))  # fmt: skip
    msg.set_content("Why is December's bill twice November's?")
    msg.add_attachment(b"bill 2026-12: 1840 UAH", maintype="text", subtype="plain",
                       filename="bill.txt")  # fmt: skip
    server.send(msg)
    case_id = _thread_of(node, mail["op"], msg["Message-ID"].strip("<>"))["case"]["id"]

    page = open_app(browser, SimpleNamespace(node=node))  # type: ignore[arg-type]
    sign_in(page, "op7004", "agent7004")
    start_shift(page, {"general"})
    page.click("[data-testid=tab-mail]")
    page.click(f"[data-testid=mail-thread-{case_id}]")
    thread = page.get_by_test_id("mail-thread")
    expect(thread).to_contain_text("Why is December's bill twice November's?")
    expect(page.get_by_test_id("mail-unknown")).to_be_visible()
    page.fill("[data-testid=mail-find]", "Koval")
    page.keyboard.press("Enter")
    page.locator("[data-testid^=mail-link-]").first.click()
    expect(page.get_by_test_id("mail-customer")).to_have_text("Petro Koval")
    page.select_option("[data-testid=mail-topic]", label="Billing")
    with page.expect_download() as got:
        page.locator("[data-testid^=mail-attachment-]").first.click()
    assert Path(got.value.path()).read_bytes() == b"bill 2026-12: 1840 UAH"

    page.fill("[data-testid=mail-reply-text]", "The December bill covers two months of readings.")
    page.set_input_files(
        "[data-testid=mail-files]",
        files=[{"name": "readings.csv", "mimeType": "text/csv", "buffer": b"month,kwh\n11,180\n"}],
    )
    page.click("[data-testid=mail-send]")
    expect(page.locator("[data-testid^=mail-state-]")).to_have_text("sent", timeout=20_000)
    _, th = _call(node, "GET", f"/api/email/threads/{case_id}", None, mail["op"])
    topics = {
        t["id"]: t["name"] for t in _call(node, "GET", "/api/topics", None, mail["op"])[1]["items"]
    }
    assert th["customer"]["name"] == "Petro Koval" and topics[th["case"]["topic_id"]] == "Billing"
    assert wait_for(lambda: len(server.inbox("petro")) == 1, 15)
    [answer] = server.inbox("petro")
    assert answer["In-Reply-To"] == msg["Message-ID"]
    assert answer["Subject"] == f"Re: Question about my bill [#{case_id}]"
    [csv] = list(answer.iter_attachments())
    assert csv.get_filename() == "readings.csv" and b"11,180" in csv.get_content().encode()
    shot(page, "mail-thread")
    expect(page.get_by_test_id(f"mail-thread-{case_id}")).to_have_count(0)  # answered

    again = _mail(From="petro@example.net", To=CENTER, Subject=f"Re: {answer['Subject']}",
                  Message_ID=make_msgid(domain="example.net"), In_Reply_To=answer["Message-ID"])  # fmt: skip
    again.set_content("Thank you, understood.")
    server.send(again)
    expect(page.get_by_test_id(f"mail-thread-{case_id}")).to_be_visible(timeout=20_000)
    page.context.close()


class Refusing:
    """aiosmtpd's handler: refuses one address for good (550) and one for now (451)."""

    def __init__(self) -> None:
        self.delivered: list[tuple[list[str], bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:  # fmt: skip
        if address == "nobody@example.org":
            return "550 5.1.1 no such user here"
        if address == "later@example.org":
            return "451 4.3.0 mailbox busy, try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted"


def test_replies_left_queued_are_sent_and_the_servers_refusals_are_told_apart(
    mail: dict[str, Any],
) -> None:
    """The sender on its own, as after a restart with replies left queued: with nothing
    listening they stay queued; then an SMTP server (aiosmtpd) takes one, refuses one for
    good (failed, with its words) and one for now (still queued, for the next round)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from aiosmtpd.controller import Controller
    from psycopg_pool import AsyncConnectionPool

    from ccorch.config import EmailConfig
    from ccorch.crm.cases import BusinessHours
    from ccorch.email.mailbox import Mailbox

    db = mail["db"]
    mail["node"].kill()  # its own sender would race this one (the next test starts it again)
    with psycopg.connect(db) as conn:
        case = conn.execute(
            "INSERT INTO cases (kind, status, subject, created_at)"
            " VALUES ('instant', 'open', 'queued test', now()) RETURNING id"
        ).fetchone()
        assert case is not None
        ids = []
        for to in ("someone@example.org", "nobody@example.org", "later@example.org"):
            msg = compose(sender=CENTER, sender_name="City Power Grid", to=to, subject="Re: x",
                          text="queued before a restart", in_reply_to=None,
                          now=dt.datetime.now(dt.UTC))  # fmt: skip
            row = conn.execute(
                "INSERT INTO email_messages (direction, message_id, from_addr, to_addrs, subject,"
                " raw, state, case_id) VALUES ('out', %s, %s, %s, 'Re: x', %s, 'queued', %s)"
                " RETURNING id",
                (msg["Message-ID"].strip("<>"), CENTER, [to], msg.as_bytes(), case[0]),
            ).fetchone()
            assert row is not None
            ids.append(row[0])

    def states() -> list[Any]:
        with psycopg.connect(db) as conn:
            return [
                conn.execute(
                    "SELECT state, error FROM email_messages WHERE id = %s", (i,)
                ).fetchone()
                for i in ids
            ]

    def run(port: int) -> int:
        # (in a thread of its own: Playwright's sync API keeps a loop running in this one)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, send(port)).result()

    async def send(port: int) -> int:
        config = EmailConfig(address=CENTER, imap_host="127.0.0.1", smtp_host="127.0.0.1",
                             smtp_port=port, smtp_security="plain")  # fmt: skip
        async with AsyncConnectionPool(db, min_size=1, max_size=2, open=False) as pool:
            return await Mailbox(pool, config, BusinessHours()).send_queued()

    with pytest.raises(OSError):
        run(free_port())  # nothing listens there
    assert states() == [("queued", None)] * 3
    handler = Refusing()
    smtp = Controller(handler, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        with pytest.raises(Exception, match="451"):
            run(smtp.port)
    finally:
        smtp.stop()
    (good, _), (bad, error), (later, _) = states()
    assert (good, bad, later) == ("sent", "failed", "queued")
    assert error == "nobody@example.org: 550 5.1.1 no such user here"
    [(to, data)] = handler.delivered
    assert to == ["someone@example.org"] and b"queued before a restart" in data


def test_mail_that_came_while_the_node_was_down_is_read_once_after_it_starts(
    mail: dict[str, Any], pg_admin_url: str
) -> None:
    node, server, db, cwd = mail["node"], mail["server"], mail["db"], mail["cwd"]
    node.kill()
    ids = []
    for i in range(3):
        msg = _mail(From=MARIA, To=CENTER, Subject=f"Reading {i}: 12{i}00 kWh",
                    Message_ID=make_msgid(domain="example.com"))  # fmt: skip
        msg.set_content("my meter reading")
        server.send(msg)
        ids.append(msg["Message-ID"].strip("<>"))
    with psycopg.connect(db) as conn:
        before = conn.execute("SELECT count(*) FROM email_messages").fetchone()
    node = start_node(cwd, {"DATABASE_URL": db, "CCORCH_CRM_ADMIN_PASSWORD": ADMIN})
    mail["node"] = node
    op = mail["op"] = _token(node, "op7003", "agent7003")
    for mid in ids:
        _thread_of(node, op, mid)
    time.sleep(1.0)  # a few more polls: nothing is read twice
    with psycopg.connect(db) as conn:
        after = conn.execute("SELECT count(*) FROM email_messages").fetchone()
        dups = conn.execute(
            "SELECT count(*) FROM (SELECT message_id FROM email_messages GROUP BY 1"
            " HAVING count(*) > 1) d"
        ).fetchone()
    assert before is not None and after is not None and dups is not None
    assert after[0] - before[0] == 3 and dups[0] == 0


def test_a_mailbox_without_an_address_or_smtp_server_is_refused_naming_the_key() -> None:
    from ccorch.config import load_config
    from ccorch.errors import ConfigError

    with pytest.raises(ConfigError, match=r"email\.address"):
        load_config(env={"CCORCH_EMAIL_IMAP_HOST": "imap.example.com"})
    with pytest.raises(ConfigError, match=r"email\.smtp_host"):
        load_config(
            env={
                "CCORCH_EMAIL_IMAP_HOST": "imap.example.com",
                "CCORCH_EMAIL_ADDRESS": "cc@example.com",
            }
        )
    with pytest.raises(ConfigError, match=r"email\.imap_security"):
        load_config(env={"CCORCH_EMAIL_IMAP_SECURITY": "ssl"})
    with pytest.raises(ConfigError, match=r"email\.address"):
        load_config(env={"CCORCH_EMAIL_ADDRESS": "not an address"})
