"""The SMS gateway: messages to customers through the carrier's SMSC, SMPP 3.4 spoken by
``aiosmpplib`` (a maintained asyncio client: bind transceiver, enquire_link, reconnection
with a doubling wait, segmentation).

A message is written (``queued``) before it is handed to the client, so a restart sends
what was queued and not yet accepted. Text that the GSM 7-bit alphabet holds goes as GSM
7-bit, anything else (Cyrillic, Chinese) as UCS-2; a text longer than one SMS is split into
concatenated parts (a User Data Header on each: the phone shows one message). The SMSC's
``submit_sm_resp`` makes it ``submitted`` (or ``failed`` with the SMSC's status), and its
delivery receipt ``delivered`` (or ``failed`` with the receipt's state): the client puts a
segmented message's receipts together and reports once all parts are in.

Receipts are matched in the client's memory: a receipt that comes after a restart for a
message submitted before it is matched by the SMSC's message id in the database instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractBroker,
    AbstractHook,
    DeliverSm,
    PhoneNumber,
    SmppCommandStatus,
    SmppMessage,
    StructuredLogger,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.ratelimiter import SimpleRateLimiter
from aiosmpplib.retrytimer import SimpleExponentialBackoff
from aiosmpplib.utils import detect_format

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from ccorch.config import SmsConfig

log = logging.getLogger(__name__)

UDHI = 0b01000000  # esm_class: the message carries a User Data Header (concatenation)
DELIVERED = "DELIVRD"
UNANSWERED_SECONDS = 10.0  # a submit_sm without its answer for so long is sent again


class Queue(AbstractBroker):  # type: ignore[misc]  # (the library has no type hints)
    """The client's outbox: an asyncio queue (the database is the durable copy)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[SmppMessage] = asyncio.Queue()

    async def enqueue(self, message: SmppMessage) -> None:
        await self.queue.put(message)

    async def dequeue(self) -> SmppMessage:
        return await self.queue.get()


def submit_sm(message_id: int, phone: str, text: str, source: str) -> SubmitSm:
    """The ``submit_sm`` of a message: GSM 7-bit or UCS-2, concatenated when long, with a
    delivery receipt asked for; ``log_id`` carries our message id through the client."""
    sender = (
        PhoneNumber(source, TON.INTERNATIONAL, NPI.ISDN)
        if source.isdigit()
        else PhoneNumber(source[:11], TON.ALPHANUMERIC, NPI.UNKNOWN)
    )
    return SubmitSm(
        short_message=text,
        source=sender,
        destination=PhoneNumber(phone, TON.INTERNATIONAL, NPI.ISDN),
        esm_class=UDHI,
        encoding=detect_format(text),
        auto_message_payload=False,
        registered_delivery=0b00000001,
        log_id=str(message_id),
    )


class SmsGateway(AbstractHook):  # type: ignore[misc]
    def __init__(self, pool: AsyncConnectionPool[Any], config: SmsConfig) -> None:
        self.pool = pool
        self.config = config
        self.outbox = Queue()
        self.esme: ESME | None = None
        self._task: asyncio.Task[None] | None = None
        self._parts: dict[str, int] = {}  # our id: segments handed to the SMSC so far
        # our id: (when its first segment was written, the message), until the SMSC answers
        self._unanswered: dict[str, tuple[float, SubmitSm]] = {}
        self._watch: asyncio.Task[None] | None = None
        self._outgoing: dict[str, tuple[str, str]] = {}  # our id: (phone, text) until answered

    @property
    def enabled(self) -> bool:
        return bool(self.config.host)

    @property
    def bound(self) -> bool:
        return self.esme is not None and self.esme.session_state().name.startswith("BOUND")

    async def start(self) -> None:
        if not self.enabled:
            return
        c = self.config
        logger = StructuredLogger("ccorch.sms.smpp", logging.WARNING, handler=logging.NullHandler())
        increases = 0
        while 2**increases < c.max_backoff_seconds and increases < 16:
            increases += 1
        self.esme = ESME(
            smsc_host=c.host,
            smsc_port=c.port,
            system_id=c.system_id,
            password=c.password,
            broker=self.outbox,
            hook=self,
            retry_timer=SimpleExponentialBackoff(min_delay=1000, max_increases=increases),
            rate_limiter=SimpleRateLimiter(logger, send_rate=float(c.rate_per_second)),
            enquire_link_interval=30.0,
            socket_timeout=10.0,
            log_level=logging.WARNING,
        )
        async with self.pool.connection() as conn:  # queued before a restart: sent now
            cur = await conn.execute(
                "SELECT id, phone, text FROM sms_messages WHERE state = 'queued' ORDER BY id"
            )
            for mid, phone, text in await cur.fetchall():
                await self._enqueue(mid, phone, text)
        self._task = asyncio.create_task(self._run(), name="sms_gateway")
        self._watch = asyncio.create_task(self._resubmit(), name="sms_resubmit")

    async def _resubmit(self) -> None:
        """A message written on a connection that died under it gets no answer and no error
        (the bytes went into a socket the SMSC had closed): without an answer within
        ``UNANSWERED_SECONDS`` it goes back to the outbox (at least once: the SMSC may see a
        copy if only its answer was lost)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for log_id, (since, message) in list(self._unanswered.items()):
                if now - since >= UNANSWERED_SECONDS:
                    del self._unanswered[log_id]
                    self._parts.pop(log_id, None)
                    log.warning("SMS unanswered by the SMSC: sent again", extra={"sms": log_id})
                    await self.outbox.enqueue(message)

    async def _run(self) -> None:
        assert self.esme is not None
        while True:  # the client reconnects by itself; this restarts it if it gave up
            try:
                await self.esme.start()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("SMPP client stopped; starting again", extra={"error": str(e)})
                await asyncio.sleep(min(self.config.max_backoff_seconds, 10))

    async def stop(self) -> None:
        if self.esme is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.esme.stop(), 5)
        if self._watch is not None:
            self._watch.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def send(
        self,
        phone: str,
        text: str,
        *,
        customer_id: int | None = None,
        case_id: int | None = None,
        campaign_id: int | None = None,
        contact_id: int | None = None,
        user_id: int | None = None,
    ) -> int:
        """Queue a message to ``phone`` (E.164 digits): written first, then handed to the
        SMSC connection (sent once bound)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                """INSERT INTO sms_messages (phone, text, customer_id, case_id, campaign_id,
                                             contact_id, created_by)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (phone, text, customer_id, case_id, campaign_id, contact_id, user_id),
            )
            row = await cur.fetchone()
        assert row is not None
        await self._enqueue(int(row[0]), phone, text)
        return int(row[0])

    async def _enqueue(self, message_id: int, phone: str, text: str) -> None:
        self._outgoing[str(message_id)] = (phone, text)
        await self.outbox.enqueue(submit_sm(message_id, phone, text, self.config.source))

    # --- the client's hooks ---

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, SubmitSm) and smpp_message.log_id:
            log_id = smpp_message.log_id
            self._parts[log_id] = self._parts.get(log_id, 0) + 1
            if log_id not in self._unanswered and log_id in self._outgoing:
                phone, text = self._outgoing[log_id]
                again = submit_sm(int(log_id), phone, text, self.config.source)
                self._unanswered[log_id] = (asyncio.get_running_loop().time(), again)

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if isinstance(smpp_message, SubmitSmResp) and smpp_message.log_id:
            await self._submitted(smpp_message)
        elif isinstance(smpp_message, DeliverSm) and smpp_message.is_receipt():
            await self._receipt(smpp_message)

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        if not (isinstance(smpp_message, SubmitSm) and smpp_message.log_id):
            return
        self._parts.pop(smpp_message.log_id, None)
        self._unanswered.pop(smpp_message.log_id, None)
        if not isinstance(error, ValueError):
            # the connection broke under it (the client does not retry): back in the outbox,
            # sent once the client has bound again
            log.warning(
                "SMS not sent: the SMSC connection broke; kept", extra={"sms": smpp_message.log_id}
            )
            await self.outbox.enqueue(smpp_message)
            return
        self._outgoing.pop(smpp_message.log_id, None)
        await self._set(
            "UPDATE sms_messages SET state = 'failed', error = %s, done_at = now() WHERE id = %s",
            (str(error)[:500], int(smpp_message.log_id)),
        )

    async def _submitted(self, resp: SubmitSmResp) -> None:
        self._unanswered.pop(resp.log_id, None)
        self._outgoing.pop(resp.log_id, None)
        mid = int(resp.log_id)
        parts = self._parts.pop(resp.log_id, None)
        if resp.command_status == SmppCommandStatus.ESME_ROK:
            await self._set(
                "UPDATE sms_messages SET state = 'submitted', smsc_id = %s, parts = %s,"
                " submitted_at = now() WHERE id = %s AND state = 'queued'",
                (resp.message_id, parts, mid),
            )
        else:
            await self._set(
                "UPDATE sms_messages SET state = 'failed', error = %s, done_at = now()"
                " WHERE id = %s",
                (resp.command_status.name, mid),
            )

    async def _receipt(self, receipt: DeliverSm) -> None:
        fields = receipt.parse_receipt()
        stat = str(fields.get("stat", ""))
        state, error = ("delivered", None) if stat == DELIVERED else ("failed", stat or "receipt")
        key: int | str
        if receipt.log_id:
            where, key = "id = %s", int(receipt.log_id)
        else:  # submitted before a restart: the SMSC's id finds it
            where, key = "smsc_id = %s", str(fields.get("id", ""))
        await self._set(
            f"UPDATE sms_messages SET state = %s, error = %s, done_at = now() WHERE {where}"
            " AND state IN ('queued', 'submitted')",
            (state, error, key),
        )

    async def _set(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            async with self.pool.connection() as conn:
                await conn.execute(sql, params)
        except Exception as e:  # the database is away: the state is behind, not wrong
            log.error("SMS state not written", extra={"error": str(e)})


__all__ = ["SmsGateway", "submit_sm"]
