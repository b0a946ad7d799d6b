"""Recordings: the node's own records of the files it wrote, and who may hear them.

Only the node links a recording (a call's, when its CDR is written; a voicemail's, with its
case); a client names one by id at most, never by path. Access is decided on the recording
itself, whatever interaction points at it:
- a recording that belongs to a confidential case (a complaint), directly or through any
  interaction that carries it, is for the complaints role (and admins) only;
- a customer's recording follows the customer's group access;
- only files under the node's recordings folder are ever served.
Every fetch is written to the audit log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ccorch.crm.store import User, audit, can_see_customer


async def link(
    conn: AsyncConnection[Any],
    path: str | Path,
    kind: str,
    *,
    sip_call_id: str | None = None,
    customer_id: int | None = None,
    case_id: int | None = None,
    created_at: dt.datetime | None = None,
    gaps: list[list[int]] | None = None,
) -> int:
    """Record a file the node wrote (in the caller's transaction); its id. Linking the same
    file again (a CDR replayed after a crash) returns the existing id. ``gaps``: the
    stretches the operator paused, [from_ms, to_ms] from the recording's start."""
    cur = await conn.execute(
        """INSERT INTO recordings (path, kind, sip_call_id, customer_id, case_id, created_at,
                                   gaps)
           VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), %s)
           ON CONFLICT (path) DO UPDATE SET path = EXCLUDED.path RETURNING id""",
        (str(path), kind, sip_call_id, customer_id, case_id, created_at, Jsonb(gaps or [])),
    )
    row = await cur.fetchone()
    assert row is not None  # INSERT ... RETURNING always returns the row
    return int(row[0])


@dataclass(frozen=True)
class Refused:
    status: int
    reason: str


async def open_for(
    conn: AsyncConnection[Any], user: User, recording_id: int, root: Path
) -> Path | Refused:
    """The recording's file if ``user`` may hear it (the access is audited), else why not."""
    cur = await conn.execute(
        """SELECT r.path, r.customer_id,
                  EXISTS (SELECT 1 FROM cases c
                          WHERE c.confidential
                            AND (c.id = r.case_id
                                 OR c.id IN (SELECT i.case_id FROM interactions i
                                             WHERE i.recording_id = r.id)))
           FROM recordings r WHERE r.id = %s""",
        (recording_id,),
    )
    row = await cur.fetchone()
    missing = Refused(404, f"no recording {recording_id}")
    if row is None:
        return missing
    path_text, customer_id, confidential = row
    if confidential and not user.roles & {"complaints", "admin"}:
        return Refused(403, "a complaint's recording: the complaints role only")
    if customer_id is not None and not await can_see_customer(conn, user, customer_id):
        return missing
    path = await asyncio.to_thread(under, root, path_text)  # file system: off the loop
    if path is None:
        return Refused(404, "the recording is not in this node's recordings")
    await audit(conn, user.id, "listen", "recording", recording_id)
    return path


def under(root: Path, ref: str) -> Path | None:
    """``ref`` as an existing file under ``root`` (links resolved), else None."""
    path = Path(ref).resolve()
    return path if root.resolve() in path.parents and path.is_file() else None
