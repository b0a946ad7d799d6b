"""The center's mailbox, at the edge: new mail read over IMAP (``imap-tools`` on the
standard ``imaplib``, run in a worker thread) becomes cases; queued replies go out over SMTP
(``aiosmtplib``).

Reading: the folder's UIDs above the last one kept are fetched without marking them seen
(``BODY.PEEK``), oldest first; each message is kept, and the folder position moves past it,
in one transaction, so a node that stops mid-way reads on from the first message it had not
committed. A Message-ID already kept is skipped (a server that renumbered its UIDs, a copy
of the same mail). Once kept, the message is flagged seen on the server for the people who
look at the mailbox with a mail client. A message that cannot be parsed is still kept, as an
unreadable case with its raw bytes.

Sending: a reply is written (queued) before anything is sent. The sender takes queued
replies oldest first; a permanent refusal (5xx) fails the reply with the server's words, a
connection failure or a 4xx leaves it queued for the next round, with a doubling wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import ssl
from typing import TYPE_CHECKING, Any

import aiosmtplib
from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.mailbox import BaseMailBox
from imap_tools.message import MailMessage

from ccorch.email.message import MailError, ParsedMail, parse
from ccorch.email.threads import Taken, take_incoming
from ccorch.tasks import cancel_and_wait

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from ccorch.config import EmailConfig
    from ccorch.crm.cases import BusinessHours
    from ccorch.events import EventStream
    from ccorch.supervision.metrics import Metrics

log = logging.getLogger(__name__)

BATCH = 50  # messages fetched per round: a full mailbox is read in steps, not at once


class _RawMessage(MailMessage):
    """imap-tools' message, keeping the bytes as the server sent them."""

    def __init__(self, fetch_data: list[Any]) -> None:
        raw, _, _ = self._get_message_data_parts(fetch_data)
        super().__init__(fetch_data)
        self.raw: bytes = raw


def unreadable(raw: bytes, reason: str, now: dt.datetime) -> ParsedMail:
    return ParsedMail(
        message_id=f"{hashlib.sha256(raw).hexdigest()[:32]}@unreadable",
        in_reply_to=None,
        references=[],
        from_addr="",
        from_name="",
        to_addrs=[],
        cc_addrs=[],
        subject="(an unreadable message)",
        text=reason,
        sent_at=now,
    )


class Mailbox:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        config: EmailConfig,
        hours: BusinessHours,
        events: EventStream | None = None,
        queues: frozenset[str] = frozenset(),
        metrics: Metrics | None = None,
    ) -> None:
        self.pool = pool
        self.config = config
        self.hours = hours
        self.events = events
        self.queues = queues  # the operators told of new mail: those of every queue
        self.metrics = metrics
        self._box: BaseMailBox | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake_sender = asyncio.Event()
        self.connected = False

    @property
    def enabled(self) -> bool:
        return bool(self.config.imap_host)

    async def start(self) -> None:
        if not self.enabled:
            return
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="email-read"),
            asyncio.create_task(self._send_loop(), name="email-send"),
        ]

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self._box is not None:
            box, self._box = self._box, None
            with contextlib.suppress(Exception):
                await asyncio.to_thread(box.logout)

    def wake_sender(self) -> None:
        self._wake_sender.set()

    # --- reading -----------------------------------------------------------------------

    def _connect(self) -> BaseMailBox:
        c = self.config
        context = ssl.create_default_context()
        box: BaseMailBox
        if c.imap_security == "tls":
            box = MailBox(c.imap_host, c.imap_port, timeout=30, ssl_context=context)
        elif c.imap_security == "starttls":
            box = MailBoxStartTls(c.imap_host, c.imap_port, timeout=30, ssl_context=context)
        else:
            box = MailBoxUnencrypted(c.imap_host, c.imap_port, timeout=30)
        box.email_message_class = _RawMessage
        box.login(c.imap_user, c.imap_password, initial_folder=c.folder)
        return box

    def _fetch(self, after: tuple[int, int] | None) -> tuple[int, list[tuple[int, bytes]]]:
        """(UIDVALIDITY, [(uid, raw)]) of the next messages after the kept position."""
        if self._box is None:
            self._box = self._connect()
        box = self._box
        validity = int(box.folder.status(self.config.folder, ["UIDVALIDITY"])["UIDVALIDITY"])
        last = after[1] if after is not None and after[0] == validity else 0
        # a bare "UID n:*" with no CHARSET: the form every server takes (GreenMail refuses
        # a parenthesized key); "n:*" always names the last message, hence the filter
        found = box.uids(f"UID {last + 1}:*", charset=None)
        uids = sorted(int(u) for u in found if int(u) > last)
        batch = [str(u) for u in uids[:BATCH]]
        out: list[tuple[int, bytes]] = []
        if batch:
            for msg in box.fetch(uid_list=batch, mark_seen=False, bulk=True):
                assert isinstance(msg, _RawMessage)
                out.append((int(msg.uid or 0), msg.raw))
        return validity, sorted(out)

    def _flag_seen(self, uids: list[int]) -> None:
        if self._box is not None and uids:
            self._box.flag([str(u) for u in uids], "\\Seen", True)

    async def read_once(self) -> list[Taken]:
        """One look at the mailbox: every new message kept. Raises on a mailbox error."""
        folder = self.config.folder
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT uidvalidity, last_uid FROM email_mailbox WHERE folder = %s", (folder,)
            )
            row = await cur.fetchone()
        validity, messages = await asyncio.to_thread(
            self._fetch, (int(row[0]), int(row[1])) if row else None
        )
        taken: list[Taken] = []
        for uid, raw in messages:
            now = dt.datetime.now(dt.UTC)
            try:
                mail = parse(raw)
            except MailError as e:
                log.warning("email: message %s in %s is unreadable: %s", uid, folder, e)
                mail = unreadable(raw, str(e), now)
            async with self.pool.connection() as conn, conn.transaction():
                kept = await take_incoming(conn, mail, raw, now=now, hours=self.hours)
                await conn.execute(
                    """INSERT INTO email_mailbox (folder, uidvalidity, last_uid) VALUES (%s, %s, %s)
                       ON CONFLICT (folder) DO UPDATE SET uidvalidity = EXCLUDED.uidvalidity,
                                                          last_uid = EXCLUDED.last_uid""",
                    (folder, validity, uid),
                )
            if kept is not None:
                taken.append(kept)
                if self.metrics is not None:
                    self.metrics.email_received.labels(
                        kind="new" if kept.new_case else "thread"
                    ).inc()
                if self.events is not None:  # the desktop reloads its list, access checked
                    self.events.publish(
                        "email.received",
                        {"case_id": kept.case_id, "new_case": kept.new_case},
                        queues=self.queues,
                    )
        if messages:
            try:
                await asyncio.to_thread(self._flag_seen, [u for u, _ in messages])
            except Exception as e:  # only a courtesy to mail clients: kept either way
                log.info("email: could not flag messages seen: %s", e)
        return taken

    async def _read_loop(self) -> None:
        wait = self.config.poll_seconds
        while True:
            try:
                got = await self.read_once()
                if self.metrics is not None:
                    self.metrics.email_mailbox_up.set(1)
                if not self.connected:
                    log.info("email: reading %s on %s", self.config.folder, self.config.imap_host)
                self.connected = True
                wait = self.config.poll_seconds
                if len(got) >= BATCH:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.connected or wait == self.config.poll_seconds:
                    log.warning(
                        "email: the mailbox %s is unreachable: %s", self.config.imap_host, e
                    )
                self.connected = False
                if self.metrics is not None:
                    self.metrics.email_mailbox_up.set(0)
                box, self._box = self._box, None
                if box is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(box.logout)
                wait = min(max(wait * 2, 1.0), 300.0)
            await asyncio.sleep(wait)

    # --- sending -----------------------------------------------------------------------

    async def send_queued(self) -> int:
        """Send every queued reply once; how many the server took."""
        c = self.config
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, raw, to_addrs, cc_addrs FROM email_messages"
                " WHERE state = 'queued' ORDER BY id LIMIT 100"
            )
            queued = await cur.fetchall()
        done = 0
        for email_id, raw, to, cc in queued:
            try:
                await aiosmtplib.send(
                    bytes(raw),
                    sender=c.address,
                    recipients=list(to) + list(cc),
                    hostname=c.smtp_host,
                    port=c.smtp_port,
                    username=c.smtp_user or None,
                    password=c.smtp_password or None,
                    use_tls=c.smtp_security == "tls",
                    start_tls=c.smtp_security == "starttls",
                    timeout=30,
                )
            except aiosmtplib.SMTPRecipientsRefused as e:
                if all(r.code >= 500 for r in e.recipients):
                    words = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in e.recipients)
                    await self._mark(email_id, "failed", words)
                    continue
                raise  # a 4xx: the server asks to try again later
            except aiosmtplib.SMTPResponseException as e:
                if e.code >= 500:
                    await self._mark(email_id, "failed", f"{e.code} {e.message}")
                    continue
                raise
            await self._mark(email_id, "sent", None)
            done += 1
        return done

    async def _mark(self, email_id: int, state: str, error: str | None) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE email_messages SET state = %s, error = %s,"
                " sent_at = CASE WHEN %s = 'sent' THEN now() END WHERE id = %s",
                (state, error, state, email_id),
            )
        if self.metrics is not None:
            self.metrics.email_replies.labels(state=state).inc()
        if state == "failed":
            log.warning("email: reply %s was refused: %s", email_id, error)

    async def _send_loop(self) -> None:
        wait = 1.0
        while True:
            self._wake_sender.clear()
            try:
                await self.send_queued()
                wait = 1.0
                timeout = 30.0  # queued by another node, or left by a restart
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning(
                    "email: the SMTP server %s is unreachable: %s", self.config.smtp_host, e
                )
                wait = min(wait * 2, 300.0)
                timeout = wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_sender.wait(), timeout)
