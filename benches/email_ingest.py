"""The e-mail channel (issue 22): how fast the center's mailbox becomes cases, and replies go.

    scripts/setup.sh release
    .venv/bin/python benches/email_ingest.py --backlog 500 --live 100 --replies 50

What runs (all on loopback, all real parts): GreenMail standalone (the tests' mail server,
SMTP and IMAP); PostgreSQL (embedded, or ``DATABASE_URL``) with the demo tenant; the node
(``ccorch serve``) reading the center's mailbox every ``--poll`` seconds.

Measured:
- **backlog**: ``--backlog`` messages waiting in the mailbox before the node starts (as
  after a night's downtime: one in ten with a 50 KB attachment, half from a customer the
  CRM knows). The time from the node's HTTP port answering to the last message kept as a
  case, the rate, and the CPU seconds the node and the PostgreSQL processes used meanwhile;
- **live**: ``--live`` messages sent one every ``--gap`` seconds; for each, the SMTP
  server's acceptance to the node's commit (``email_messages.received_at``; one machine,
  one clock): p50, p95, max. The poll interval is most of it: the figure is for the
  ``--poll`` given;
- **replies**: ``--replies`` replies posted over the API one after the other; the 202 to
  the reply's state ``sent`` (the SMTP server took it): p50, p95, max; and that each
  arrived in the customer's mailbox.

Leaves out: TLS to the mail servers (plain on loopback here), a mail server elsewhere on a
network, IMAP servers slower than GreenMail's in-memory store, and large mailboxes' SEARCH.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benches.inbound_load import database, wait_port  # noqa: E402
from tests.sipp import free_udp_port  # noqa: E402
from tests.test_email import CENTER, MailServer  # noqa: E402

ADMIN = "bench-admin-password"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def message(i: int, known: bool, attach: bool) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "maria.sydorenko@example.com" if known else f"writer{i}@example.org"
    msg["To"] = CENTER
    msg["Subject"] = f"Meter reading {i}" if i % 2 else f"Question {i} about my bill"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content(f"Message {i}.\n" + "Some text of a real length. " * 20)
    if attach:
        msg.add_attachment(bytes(range(256)) * 200, maintype="image", subtype="jpeg",
                           filename=f"photo{i}.jpg")  # fmt: skip
    return msg


def call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    req = urllib.request.Request(  # noqa: S310 - loopback
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def cpu_by_pid(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def postgres_processes(work: Path) -> list[psutil.Process]:
    """The embedded server started in ``work`` and its backends (none with DATABASE_URL:
    a server elsewhere is not measured)."""
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if str(work) in line and "postgres" in line:
            return [p, *p.children(recursive=True)]
    return []


def used(before: dict[int, float], procs: list[psutil.Process]) -> float:
    """CPU seconds since ``before``; a process started since counts whole (a backend that
    ended meanwhile is missed: the pool keeps its connections, so few do)."""
    return sum(t - before.get(pid, 0.0) for pid, t in cpu_by_pid(procs).items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=500)
    ap.add_argument("--live", type=int, default=100)
    ap.add_argument("--gap", type=float, default=0.2)
    ap.add_argument("--replies", type=int, default=50)
    ap.add_argument("--poll", type=float, default=1.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import psycopg

    work = Path(tempfile.mkdtemp(prefix="ccorch-email-"))
    server = MailServer(work / "greenmail.log")
    db_url, pg = database(work)
    node: subprocess.Popen[bytes] | None = None
    try:
        (work / "ccorch.toml").write_text(
            f'[email]\naddress = "{CENTER}"\nimap_host = "127.0.0.1"\n'
            f'imap_port = {server.imap}\nimap_security = "plain"\nimap_user = "center"\n'
            f'imap_password = "secret"\npoll_seconds = {args.poll}\nsmtp_host = "127.0.0.1"\n'
            f'smtp_port = {server.smtp}\nsmtp_security = "plain"\n'
        )
        for i in range(args.backlog):
            server.send(message(i, known=i % 2 == 0, attach=i % 10 == 0))
        http = free_udp_port()
        env = {"DATABASE_URL": db_url, "CCORCH_CRM_ADMIN_PASSWORD": ADMIN, "PATH": "/usr/bin:/bin"}
        node = subprocess.Popen(
            [sys.executable, "-m", "ccorch", "serve", "--port", str(http)],
            cwd=work, env=env, stdout=subprocess.DEVNULL,
            stderr=(work / "ccorch.log").open("wb"),
        )  # fmt: skip
        wait_port(http)
        base = f"http://127.0.0.1:{http}"
        started = time.monotonic()
        node_proc = psutil.Process(node.pid)
        node_cpu0, pg_cpu0 = cpu_by_pid([node_proc]), cpu_by_pid(postgres_processes(work))

        def kept() -> int:
            with psycopg.connect(db_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM email_messages WHERE direction = 'in'"
                ).fetchone()
                return int(row[0]) if row else 0

        while kept() < args.backlog:
            if time.monotonic() - started > 600:
                raise SystemExit(f"backlog: only {kept()} of {args.backlog} after 600 s")
            time.sleep(0.05)
        backlog_s = time.monotonic() - started
        node_cpu = used(node_cpu0, [node_proc])
        pg_cpu = used(pg_cpu0, postgres_processes(work))

        # live: acceptance to commit, per message
        sent: dict[str, float] = {}
        for i in range(args.live):
            msg = message(10_000 + i, known=True, attach=False)
            server.send(msg)
            sent[msg["Message-ID"].strip("<>")] = time.time()
            time.sleep(args.gap)
        deadline = time.monotonic() + 60
        live: list[float] = []
        while time.monotonic() < deadline:
            with psycopg.connect(db_url) as conn:
                rows = conn.execute(
                    "SELECT message_id, extract(epoch FROM received_at) FROM email_messages"
                    " WHERE message_id = ANY(%s)",
                    (list(sent),),
                ).fetchall()
            if len(rows) == len(sent):
                live = [float(r[1]) - sent[r[0]] for r in rows]
                break
            time.sleep(0.2)

        # replies: 202 to sent
        token = call(base, "POST", "/api/auth/login", {"login": "op7003", "password": "agent7003"})[
            "token"
        ]
        threads = call(base, "GET", "/api/email/threads", None, token)["items"]
        maria = [t["case_id"] for t in threads if t["from"] == "maria.sydorenko@example.com"]
        reply_s: list[float] = []
        for i in range(args.replies):
            t0 = time.monotonic()
            r = call(base, "POST", f"/api/email/threads/{maria[i % len(maria)]}/reply",
                     {"text": f"Answer {i}: thank you."}, token)  # fmt: skip
            while True:
                with psycopg.connect(db_url) as conn:
                    row = conn.execute(
                        "SELECT state FROM email_messages WHERE id = %s", (r["id"],)
                    ).fetchone()
                if row and row[0] != "queued":
                    break
                time.sleep(0.005)
            reply_s.append(time.monotonic() - t0)
        arrived = len(server.inbox("maria.sydorenko"))
        out = {
            "backlog": {
                "messages": args.backlog,
                "seconds": round(backlog_s, 2),
                "per_second": round(args.backlog / backlog_s, 1),
                "node_cpu_s": round(node_cpu, 2),
                "postgres_cpu_s": round(pg_cpu, 2),
                "cpu_ms_per_message": round(1000 * (node_cpu + pg_cpu) / args.backlog, 2),
            },
            "live": {
                "messages": len(live),
                "poll_seconds": args.poll,
                "p50_s": round(statistics.median(live), 3) if live else None,
                "p95_s": round(pct(live, 0.95), 3) if live else None,
                "max_s": round(max(live), 3) if live else None,
            },
            "replies": {
                "replies": len(reply_s),
                "p50_ms": round(1000 * statistics.median(reply_s), 1),
                "p95_ms": round(1000 * pct(reply_s, 0.95), 1),
                "max_ms": round(1000 * max(reply_s), 1),
                "arrived": arrived,
            },
        }
        print(json.dumps(out, indent=2))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    finally:
        if node is not None:
            node.kill()
            node.wait(10)
        server.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
