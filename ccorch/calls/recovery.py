"""Closing the calls a node was carrying when it died (see :mod:`ccorch.calls.journal`).

At start, before any phone's agent is logged in again, each call left in the journal:
- gets its CDR, closed with outcome ``node-failure`` at the node's last sign of life, with
  the interaction in the customer's history (committed, or spooled like any CDR);
- has its recording's header made to match the audio on disk, and linked through the CDR;
- has BYE sent to each far end whose dialog was kept (the caller's carrier, the operator's
  phone), so no phone is left in a call nobody ends.
Operators whose phones were in such a call are logged in only once their phone has
answered the BYE (it is free again); a phone that never answers stays logged out until it
registers again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ccorch.acd.service import AcdService
from ccorch.calls.cdr import CdrSink
from ccorch.calls.journal import Journal, SavedDialog, finalize_wav
from ccorch.sip.message import Response
from ccorch.sip.service import SipService
from ccorch.sip.transaction import ClientTxn

log = logging.getLogger(__name__)

OUTCOME = "node-failure"


class _ByeAnswer:
    """The client side of one recovery BYE: resolves with the final status (408: none)."""

    def __init__(self) -> None:
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_response(self, resp: Response, txn: ClientTxn) -> None:
        if resp.status >= 200 and not self.done.done():
            self.done.set_result(resp.status)

    def on_timeout(self, txn: ClientTxn) -> None:
        if not self.done.done():
            self.done.set_result(408)


@dataclass
class Recovered:
    calls: int = 0
    unreadable: int = 0
    byes: dict[str, int] = field(default_factory=dict)  # far end -> final status


async def recover(
    journal: Journal, service: SipService, cdrs: CdrSink, acd: AcdService | None
) -> tuple[Recovered, asyncio.Task[Recovered] | None]:
    """Close what the journal holds. Returns at once after the CDRs are durable; the BYEs
    and the operators' return finish in the task returned."""
    report = Recovered()
    last_alive = journal.last_alive()
    pending: list[tuple[SavedDialog, _ByeAnswer]] = []
    for item in journal.left_over():
        entry = item.entry
        if entry is None:
            report.unreadable += 1
            journal.recovered(item)  # (a whole file of an older version: kept for a person)
            log.error("call journal entry unreadable; kept", extra={"entry": item.key})
            continue
        record = entry.cdr
        saved = item.saved_at
        ended = max(last_alive or saved, saved)  # the entry itself was written while alive
        record.outcome, record.status, record.ended_at = OUTCOME, 200, ended
        if record.answered_at is not None:
            record.talk_seconds = max(0.0, (ended - record.answered_at).total_seconds())
        if record.recording_path and not finalize_wav(Path(record.recording_path)):
            log.warning("recording not finalized", extra={"file": record.recording_path})
        await cdrs.commit(record)  # durable before the journal lets it go
        journal.recovered(item)
        report.calls += 1
        for saved_dialog in entry.dialogs:
            answer = _ByeAnswer()
            dialog = saved_dialog.dialog()
            service.send_request(dialog.request("BYE"), dialog.dest, answer)
            pending.append((saved_dialog, answer))
        log.warning(
            "call closed after the node died",
            extra={
                "call_ref": record.call_ref,
                "ended_at": ended.isoformat(),
                "legs": len(entry.dialogs),
            },
        )
    journal.recovered_all()
    operators = {s.target for s, _ in pending if s.side == "b" and s.target}
    if acd is not None:
        acd.hold_back(operators)
    if not pending:
        return report, None

    async def finish() -> Recovered:
        for saved, answer in pending:
            status = await answer.done
            report.byes[f"{saved.side}:{saved.target or saved.remote_uri}"] = status
            if acd is not None and saved.side == "b" and saved.target:
                # any answer means the phone is there and out of the call; silence, not
                acd.release(saved.target, reachable=status != 408)
        log.info("calls of the previous run closed", extra={"byes": report.byes})
        return report

    return report, asyncio.create_task(finish(), name="call_recovery")
