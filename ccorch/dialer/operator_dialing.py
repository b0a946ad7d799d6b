"""Calls a campaign places for one operator, not for the queue: preview (the operator asks
for the next contact, reads the card, dials it or passes over) and personal callbacks (a
customer asked this operator to call back at a time).

The operator is held from queue offers while such a call is theirs (the ACD's Not ready
"outbound", from the moment the contact is shown or claimed until the call ends), so an
inbound call cannot take them while their customer's phone rings; their phone rings once
the customer answers (``CampaignDial.agent``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

if TYPE_CHECKING:
    from ccorch.dialer.manager import Attempt, CampaignManager, CampaignRun

log = logging.getLogger(__name__)

PERSONAL_EVERY = 1.0  # seconds between looks for personal callbacks that are due


class OperatorDialing:
    def __init__(self, manager: CampaignManager) -> None:
        self.m = manager
        # the operator each held call or shown preview belongs to, by attempt
        self.held: dict[int, str] = {}
        self._looked: dict[int, float] = {}  # campaign → when personal callbacks were sought

    def _hold(self, extension: str, attempt_id: int) -> bool:
        if not self.m.acd.hold_for_outbound(extension):
            return False
        self.held[attempt_id] = extension
        return True

    def release(self, attempt_id: int) -> None:
        """The attempt is over (ended, passed over): its operator may take offers again."""
        extension = self.held.pop(attempt_id, None)
        if extension is not None and extension not in self.held.values():
            self.m.acd.end_outbound(extension)

    def busy_with_own_call(self, extension: str) -> bool:
        return extension in self.held.values()

    # --- preview ---

    def preview_campaigns(self, extension: str) -> list[CampaignRun]:
        """The running preview campaigns this operator works (by their shift's groups)."""
        groups = self.m.acd.working.get(extension, ())
        return [
            r for r in self.m.runs.values()
            if r.mode == "preview" and not r.stopping and r.queue in groups
        ]  # fmt: skip

    async def preview_next(self, extension: str) -> dict[str, Any] | None:
        """The next contact of a preview campaign the operator works, claimed for them (its
        attempt written) and the operator held from offers; None when none is due."""
        for run in self.preview_campaigns(extension):
            claimed = await self.m.claim(run, 1, self.m.clock(), previewed_by=extension)
            if claimed:
                contact, attempt = claimed[0]
                run.previews[attempt.id] = (extension, contact, attempt)
                self._hold(extension, attempt.id)
                return {
                    "attempt": attempt.id,
                    "campaign": {"id": run.id, "name": run.name, "survey": run.survey_id},
                    "phone": contact["phone"],
                    "name": contact["name"],
                    "customer_id": contact["customer_id"],
                    "variables": contact["variables"],
                }
        return None

    def _preview(
        self, attempt_id: int, extension: str
    ) -> tuple[CampaignRun, dict[str, Any], Attempt]:
        for run in self.m.runs.values():
            shown = run.previews.get(attempt_id)
            if shown is not None and shown[0] == extension:
                return run, shown[1], shown[2]
        raise KeyError(attempt_id)

    def preview_dial(self, attempt_id: int, extension: str) -> bool:
        """Dial the contact shown to the operator; their phone rings once the customer
        answers. False when this operator has no such contact shown, or no trunk is up."""
        try:
            run, contact, attempt = self._preview(attempt_id, extension)
        except KeyError:
            return False
        trunk = self.m.trunk()
        if trunk is None:
            return False
        run.previews.pop(attempt_id, None)
        self.m.place(run, trunk, contact, attempt, agent=extension)
        return True

    def preview_skip(self, attempt_id: int, extension: str) -> bool:
        """The operator passes over the contact shown: it goes back to the list (later)."""
        try:
            run, _, attempt = self._preview(attempt_id, extension)
        except KeyError:
            return False
        run.previews.pop(attempt_id, None)
        self.release(attempt_id)

        async def write(conn: AsyncConnection[Any]) -> None:
            await conn.execute(
                "UPDATE campaign_attempts SET ended_at = now(), outcome = 'skipped' WHERE id = %s",
                (attempt.id,),
            )
            await conn.execute(
                "UPDATE campaign_contacts SET state = 'retry', last_outcome = 'skipped',"
                " attempts = attempts - 1, next_attempt_at = now() + interval '10 minutes'"
                " WHERE id = %s",
                (attempt.contact_id,),
            )

        self.m.write(write)
        return True

    # --- personal callbacks ---

    async def personal_callbacks(self, run: CampaignRun, now: dt.datetime) -> None:
        """Dial the due personal callbacks of operators who are Ready in the campaign's
        group, one each, holding the operator first (a personal callback waits for its
        operator: it is not given to another)."""
        clock = now.timestamp()
        if clock - self._looked.get(run.id, 0.0) < PERSONAL_EVERY or run.queue is None:
            return
        self._looked[run.id] = clock
        ready = [
            ext for ext, groups in self.m.acd.working.items()
            if run.queue in groups and (self.m.acd.agent_state(ext) or ("",))[0] == "ready"
            and not self.busy_with_own_call(ext)
        ]  # fmt: skip
        if not ready:
            return
        async with self.m.pool.connection() as conn:
            cur = await conn.execute(
                """SELECT DISTINCT callback_agent FROM campaign_contacts
                    WHERE campaign_id = %s AND callback_agent = ANY(%s)
                      AND state IN ('pending', 'retry') AND next_attempt_at <= %s""",
                (run.id, ready, now),
            )
            due = [r[0] for r in await cur.fetchall()]
        trunk = self.m.trunk()
        if trunk is None:
            return
        for extension in due:
            if not self.m.acd.hold_for_outbound(extension):
                continue  # an offer came meanwhile: at the next look
            claimed = await self.m.claim(run, 1, now, personal_for=extension)
            if not claimed:
                self.m.acd.end_outbound(extension)
                continue
            contact, attempt = claimed[0]
            self.held[attempt.id] = extension
            log.info(
                "personal callback",
                extra={"campaign": run.id, "attempt": attempt.id, "agent": extension},
            )
            self.m.place(run, trunk, contact, attempt, agent=extension, personal=True)
