"""The utility's records (seed 003: an electricity distributor): service points with their
tariff and meter, meter readings and their checks, outages by address, and technological
connection requests with their stages.

What the IVR and the desktop both use lives here: the service point of an account or of an
identified caller, the check of a new reading against the last one, the outages at a
service point's address, a connection request's stage in the caller's language. The HTTP
routes are in :mod:`ccorch.crm.utility_api`.

A reading is refused when it is lower than the last one (a meter does not run backwards;
a register that rolled over or a replaced meter is the operator's to enter) or when it
implies more than the tariff's plausible daily use times the days since the last reading
(at least one day): most often a digit typed twice. Operators may enter an implausible one
after checking; a lower one never.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ccorch.crm.store import User, audit, plain_row
from ccorch.errors import RequestRefused

STAGES = (
    "registered",
    "documents_sent",
    "contract_signed",
    "works",
    "inspection",
    "connected",
)
CANCELLED = "cancelled"

# What a caller hears for a stage, in the flow's language.
STAGE_NAMES: dict[str, dict[str, str]] = {
    "ru": {
        "registered": "заявка зарегистрирована и рассматривается",
        "documents_sent": "технические условия и проект договора направлены вам",
        "contract_signed": "договор заключён",
        "works": "сетевая организация выполняет работы по присоединению",
        "inspection": "проводится проверка выполнения технических условий",
        "connected": "присоединение выполнено",
        "cancelled": "заявка аннулирована",
    },
    "en": {
        "registered": "your request is registered and under review",
        "documents_sent": "the technical conditions and the draft contract have been sent to you",
        "contract_signed": "the contract is signed",
        "works": "the grid company is carrying out the connection works",
        "inspection": "the technical conditions are being inspected",
        "connected": "the connection is complete",
        "cancelled": "the request was cancelled",
    },
    "zh": {
        "registered": "您的申请已登记，正在审核",
        "documents_sent": "技术条件和合同草案已寄给您",
        "contract_signed": "合同已签订",
        "works": "电网公司正在进行接入施工",
        "inspection": "正在检查技术条件的落实情况",
        "connected": "接入已完成",
        "cancelled": "申请已取消",
    },
}

OUTAGE_KIND_NAMES: dict[str, dict[str, str]] = {
    "ru": {"planned": "плановое отключение", "emergency": "аварийное отключение"},
    "en": {"planned": "a planned outage", "emergency": "an emergency outage"},
    "zh": {"planned": "计划停电", "emergency": "故障停电"},
}


# --- readings: the check ----------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    day: int
    night: int | None
    taken_at: dt.datetime


@dataclass(frozen=True)
class ReadingCheck:
    """``error``: None (fine), ``lower``, ``implausible``, ``night_missing`` (a two-zone
    meter needs both), ``night_unexpected`` (a one-zone meter has one)."""

    error: str | None
    used: int = 0  # kWh since the last reading (both zones)
    limit: int = 0  # the most that is plausible since then


def check_reading(
    last: Reading | None, day: int, night: int | None, zones: int, max_daily_kwh: int,
    now: dt.datetime,
) -> ReadingCheck:  # fmt: skip
    """Whether a new reading may be stored (pure: no I/O)."""
    if zones == 2 and night is None:
        return ReadingCheck("night_missing")
    if zones == 1 and night is not None:
        return ReadingCheck("night_unexpected")
    if last is None:
        return ReadingCheck(None)
    if day < last.day or (night is not None and last.night is not None and night < last.night):
        return ReadingCheck("lower")
    used = day - last.day
    if night is not None and last.night is not None:
        used += night - last.night
    days = max(1, math.ceil((now - last.taken_at).total_seconds() / 86400))
    limit = max_daily_kwh * days
    if used > limit:
        return ReadingCheck("implausible", used, limit)
    return ReadingCheck(None, used, limit)


# --- service points ---------------------------------------------------------------------


async def service_point(
    conn: AsyncConnection[Any], *, contract_no: str = "", customer_id: int | None = None
) -> dict[str, Any] | None:
    """The service point of an account (by its number), or the first of an identified
    customer's accounts that has one: address, tariff, meter and its last reading."""
    arg: str | int
    if contract_no:
        where, arg = "a.contract_no = %s", contract_no
    elif customer_id is not None:
        where, arg = "a.customer_id = %s", customer_id
    else:
        return None
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"""SELECT sp.id, a.contract_no, a.customer_id, sp.locality, sp.street, sp.house,
                   sp.house_no, sp.apartment, t.code AS tariff, t.name AS tariff_name, t.zones,
                   t.max_daily_kwh, m.id AS meter_id, m.serial AS meter, m.installed_on
            FROM service_points sp
            JOIN accounts a ON a.id = sp.account_id
            JOIN tariffs t ON t.code = sp.tariff
            LEFT JOIN meters m ON m.service_point_id = sp.id AND m.removed_on IS NULL
            WHERE {where} ORDER BY a.contract_no LIMIT 1""",
        (arg,),
    )
    sp = await cur.fetchone()
    if sp is None:
        return None
    sp["address"] = address_text(sp)
    last = await last_reading(conn, sp["meter_id"]) if sp["meter_id"] is not None else None
    sp["last_day"] = last.day if last else None
    sp["last_night"] = last.night if last else None
    sp["last_taken_at"] = last.taken_at if last else None
    return sp


def address_text(sp: dict[str, Any]) -> str:
    apt = f", apt {sp['apartment']}" if sp.get("apartment") else ""
    return f"{sp['locality']}, {sp['street']} {sp['house']}{apt}"


async def last_reading(conn: AsyncConnection[Any], meter_id: int) -> Reading | None:
    cur = await conn.execute(
        """SELECT day_kwh, night_kwh, taken_at FROM meter_readings WHERE meter_id = %s
           ORDER BY taken_at DESC, id DESC LIMIT 1""",
        (meter_id,),
    )
    row = await cur.fetchone()
    return Reading(int(row[0]), None if row[1] is None else int(row[1]), row[2]) if row else None


@dataclass(frozen=True)
class Submitted:
    """A reading taken (``check.error`` None, ``reading_id`` set when stored) or refused."""

    check: ReadingCheck
    last: Reading | None
    zones: int
    reading_id: int | None = None


async def submit_reading(
    conn: AsyncConnection[Any],
    contract_no: str,
    day: int,
    night: int | None,
    *,
    channel: str,
    now: dt.datetime,
    user: User | None = None,
    sip_call_id: str | None = None,
    accept_implausible: bool = False,
    store: bool = True,
) -> Submitted | None:
    """Check a reading for the account's meter and store it when it passes (``store``
    False: check only, the flow editor's dry run). None: no such account, service point
    or meter in service. The meter's row is locked, so two readings at once are checked
    one after the other."""
    async with conn.transaction():
        cur = await conn.execute(
            """SELECT m.id, t.zones, t.max_daily_kwh FROM accounts a
               JOIN service_points sp ON sp.account_id = a.id
               JOIN tariffs t ON t.code = sp.tariff
               JOIN meters m ON m.service_point_id = sp.id AND m.removed_on IS NULL
               WHERE a.contract_no = %s FOR UPDATE OF m""",
            (contract_no,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        meter_id, zones, max_daily = int(row[0]), int(row[1]), int(row[2])
        last = await last_reading(conn, meter_id)
        check = check_reading(last, day, night, zones, max_daily, now)
        if check.error == "implausible" and accept_implausible:
            check = ReadingCheck(None, check.used, check.limit)
        if check.error is not None or not store:
            return Submitted(check, last, zones)
        cur = await conn.execute(
            """INSERT INTO meter_readings (meter_id, day_kwh, night_kwh, taken_at, channel,
                                           entered_by, sip_call_id)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (meter_id, day, night, now, channel, user.id if user else None, sip_call_id),
        )
        got = await cur.fetchone()
        assert got is not None
        if user is not None:
            await audit(conn, user.id, "create", "meter_reading", got[0], None,
                        {"contract_no": contract_no, "day": day, "night": night,
                         "accepted_implausible": accept_implausible})  # fmt: skip
        return Submitted(check, last, zones, int(got[0]))


async def readings(
    conn: AsyncConnection[Any], meter_id: int, limit: int = 12
) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT r.id, r.day_kwh, r.night_kwh, r.taken_at, r.channel, u.full_name AS entered_by
           FROM meter_readings r LEFT JOIN users u ON u.id = r.entered_by
           WHERE r.meter_id = %s ORDER BY r.taken_at DESC, r.id DESC LIMIT %s""",
        (meter_id, limit),
    )
    return [plain_row(r) for r in await cur.fetchall()]


# --- outages -----------------------------------------------------------------------------


async def outages_at(
    conn: AsyncConnection[Any], sp: dict[str, Any], now: dt.datetime, ahead: dt.timedelta
) -> list[dict[str, Any]]:
    """Outages covering the service point's address that are on now or start within
    ``ahead``: the ones on now first, then by start."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT id, ref, kind, locality, street, house_from, house_to, starts_at,
                  expected_end, ended_at, reason, starts_at <= %(now)s AS current
           FROM outages
           WHERE lower(locality) = lower(%(locality)s)
             AND (street IS NULL OR lower(street) = lower(%(street)s))
             AND (house_from IS NULL OR %(house)s BETWEEN house_from AND house_to)
             AND starts_at <= %(until)s AND coalesce(ended_at, expected_end) > %(now)s
           ORDER BY starts_at <= %(now)s DESC, starts_at, id""",
        {"now": now, "until": now + ahead, "locality": sp["locality"], "street": sp["street"],
         "house": sp["house_no"]},
    )  # fmt: skip
    return [plain_row(r) for r in await cur.fetchall()]


def local_moments(outage: dict[str, Any], tz: str) -> dict[str, str]:
    """An outage's start and expected end as local dates and times (ISO text), what the
    flow says with ``{var:date}`` and ``{var:time}``."""
    zone = ZoneInfo(tz)
    out: dict[str, str] = {}
    for key, name in (("starts_at", "start"), ("expected_end", "end")):
        at = dt.datetime.fromisoformat(str(outage[key])).astimezone(zone)
        out[f"outage_{name}_date"] = at.date().isoformat()
        out[f"outage_{name}_time"] = at.strftime("%H:%M")
    return out


OUTAGE_COLUMNS = (
    "ref", "kind", "locality", "street", "house_from", "house_to", "starts_at", "expected_end",
    "reason",
)  # fmt: skip


@dataclass(frozen=True)
class OutageRow:
    ref: str | None
    kind: str
    locality: str
    street: str | None
    house_from: int | None
    house_to: int | None
    starts_at: dt.datetime
    expected_end: dt.datetime
    reason: str


def outage_row(values: dict[str, Any]) -> OutageRow:
    """One outage from text fields (a CSV row or an API body); ValueError with the reason."""

    def text(key: str) -> str | None:
        v = values.get(key)
        v = "" if v is None else str(v).strip()
        return v or None

    kind = text("kind")
    if kind not in ("planned", "emergency"):
        raise ValueError("kind is planned or emergency")
    locality = text("locality")
    if locality is None:
        raise ValueError("locality is required")
    street = text("street")
    houses: list[int | None] = []
    for key in ("house_from", "house_to"):
        v = text(key)
        if v is None:
            houses.append(None)
        elif not v.isdigit():
            raise ValueError(f"{key} is a house number")
        else:
            houses.append(int(v))
    lo, hi = houses
    if (lo is None) != (hi is None):
        raise ValueError("house_from and house_to go together (both empty: the whole street)")
    if lo is not None and hi is not None and hi < lo:
        raise ValueError("house_to is below house_from")
    if lo is not None and street is None:
        raise ValueError("a house range needs the street")
    times: list[dt.datetime] = []
    for key in ("starts_at", "expected_end"):
        v = text(key)
        if v is None:
            raise ValueError(f"{key} is required")
        try:
            at = dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{key}: not an ISO 8601 time ({v!r})") from None
        if at.tzinfo is None:
            raise ValueError(f"{key}: give the offset, e.g. {v}+03:00")
        times.append(at)
    if times[1] <= times[0]:
        raise ValueError("expected_end is not after starts_at")
    reason = text("reason") or ""
    if len(reason) > 500:
        raise ValueError("reason is at most 500 characters")
    return OutageRow(text("ref"), kind, locality, street, lo, hi, times[0], times[1], reason)


def parse_outages_csv(content: str) -> list[OutageRow]:
    """Every row of an operations department's CSV (a header line naming the columns of
    ``OUTAGE_COLUMNS``; ref, street, the houses and reason may be empty). ValueError with
    the line and the reason at the first bad row: a file is taken whole or not at all."""
    # newline="": the csv module reads line ends itself (a carriage return inside a field
    # is then data, not a broken line)
    reader = csv.DictReader(io.StringIO(content, newline=""))
    try:
        return _outage_rows(reader)
    except csv.Error as e:  # e.g. a field over the module's size limit
        raise ValueError(
            f"line {reader.line_num + 1}: not CSV ({e})"
        ) from None  # (the line it was reading)


def _outage_rows(reader: csv.DictReader[str]) -> list[OutageRow]:
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("kind", "locality", "starts_at", "expected_end") if c not in header]
    if missing:
        raise ValueError(f"line 1: missing column {missing[0]}")
    unknown = [h for h in header if h not in OUTAGE_COLUMNS]
    if unknown:
        raise ValueError(f"line 1: unknown column {unknown[0]!r}")
    reader.fieldnames = header
    rows: list[OutageRow] = []
    refs: set[str] = set()
    for record in reader:
        line = reader.line_num
        if None in record:
            raise ValueError(f"line {line}: more fields than columns")
        try:
            row = outage_row(record)
        except ValueError as e:
            raise ValueError(f"line {line}: {e}") from None
        if row.ref is not None:
            if row.ref in refs:
                raise ValueError(f"line {line}: ref {row.ref!r} is given twice")
            refs.add(row.ref)
        rows.append(row)
    if not rows:
        raise ValueError("no outage in the file")
    return rows


async def save_outage(
    conn: AsyncConnection[Any], row: OutageRow, user: User | None
) -> tuple[int, bool]:
    """Insert the outage, or update the one with its ``ref``: (id, created)."""
    cur = await conn.execute(
        """INSERT INTO outages (ref, kind, locality, street, house_from, house_to, starts_at,
                                expected_end, reason)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (ref) DO UPDATE SET kind = excluded.kind, locality = excluded.locality,
               street = excluded.street, house_from = excluded.house_from,
               house_to = excluded.house_to, starts_at = excluded.starts_at,
               expected_end = excluded.expected_end, reason = excluded.reason, updated_at = now()
           RETURNING id, (xmax = 0) AS created""",
        (row.ref, row.kind, row.locality, row.street, row.house_from, row.house_to,
         row.starts_at, row.expected_end, row.reason),
    )  # fmt: skip
    got = await cur.fetchone()
    assert got is not None
    oid, created = int(got[0]), bool(got[1])
    if user is not None:
        after = {k: getattr(row, k) for k in OUTAGE_COLUMNS}
        await audit(conn, user.id, "create" if created else "change", "outage", oid, None,
                    plain_row(after))  # fmt: skip
    return oid, created


async def outage(conn: AsyncConnection[Any], outage_id: int) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT id, ref, kind, locality, street, house_from, house_to, starts_at,
                  expected_end, ended_at, reason, created_at, updated_at
           FROM outages WHERE id = %s""",
        (outage_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise RequestRefused(404, f"no outage {outage_id}")
    return plain_row(row)


# --- connection requests ------------------------------------------------------------------


async def connection_request(
    conn: AsyncConnection[Any], number: str, language: str | None = None
) -> dict[str, Any] | None:
    """A request with its stages (and, for ``language``, the current stage as said)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """SELECT id, number, customer_id, address, power_kw, stage, submitted_at, due_on
           FROM connection_requests WHERE number = %s""",
        (number,),
    )
    req = await cur.fetchone()
    if req is None:
        return None
    await cur.execute(
        """SELECT s.stage, s.at, s.note, u.full_name AS by FROM connection_request_stages s
           LEFT JOIN users u ON u.id = s.user_id WHERE s.request_id = %s ORDER BY s.at, s.id""",
        (req["id"],),
    )
    stages = [plain_row(s) for s in await cur.fetchall()]
    out = plain_row(req)
    out["stages"] = stages
    out["stage_since"] = stages[-1]["at"][:10] if stages else out["submitted_at"][:10]
    done = STAGES.index(req["stage"]) if req["stage"] in STAGES else -1
    out["next_stage"] = STAGES[done + 1] if 0 <= done < len(STAGES) - 1 else None
    if language is not None:
        out["stage_name"] = STAGE_NAMES[language][req["stage"]]
    return out


async def advance_request(
    conn: AsyncConnection[Any], number: str, to: str, note: str, user: User, now: dt.datetime
) -> None:
    """Move a request to its next stage (stages are not skipped) or cancel it (not once
    connected). RequestRefused 404 or 409 with the reason."""
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT id, stage FROM connection_requests WHERE number = %s FOR UPDATE", (number,)
        )
        row = await cur.fetchone()
        if row is None:
            raise RequestRefused(404, f"no connection request {number}")
        rid, stage = int(row[0]), str(row[1])
        if stage in (CANCELLED, STAGES[-1]):
            raise RequestRefused(409, f"the request is {stage}: no further stage")
        allowed = STAGES[STAGES.index(stage) + 1]
        if to not in (allowed, CANCELLED):
            raise RequestRefused(409, f"from {stage} the next stage is {allowed} (or cancelled)")
        await conn.execute("UPDATE connection_requests SET stage = %s WHERE id = %s", (to, rid))
        await conn.execute(
            """INSERT INTO connection_request_stages (request_id, stage, at, user_id, note)
               VALUES (%s, %s, %s, %s, %s)""",
            (rid, to, now, user.id, note),
        )
        await audit(conn, user.id, "transition", "connection_request", number,
                    {"stage": stage}, {"stage": to})  # fmt: skip


async def create_request(
    conn: AsyncConnection[Any], number: str, customer_id: int, address: str, power_kw: Decimal,
    due_on: dt.date | None, user: User | None, now: dt.datetime,
) -> int:  # fmt: skip
    async with conn.transaction():
        cur = await conn.execute(
            """INSERT INTO connection_requests (number, customer_id, address, power_kw, stage,
                                                submitted_at, due_on)
               VALUES (%s, %s, %s, %s, 'registered', %s, %s)
               ON CONFLICT (number) DO NOTHING RETURNING id""",
            (number, customer_id, address, power_kw, now, due_on),
        )
        row = await cur.fetchone()
        if row is None:
            raise RequestRefused(409, f"a connection request {number} exists")
        rid = int(row[0])
        await conn.execute(
            """INSERT INTO connection_request_stages (request_id, stage, at, user_id)
               VALUES (%s, 'registered', %s, %s)""",
            (rid, now, user.id if user else None),
        )
        if user is not None:
            await audit(conn, user.id, "create", "connection_request", number, None,
                        {"customer_id": customer_id, "address": address,
                         "power_kw": str(power_kw)})  # fmt: skip
    return rid


# --- the card ------------------------------------------------------------------------------


async def customer_utility(
    conn: AsyncConnection[Any], customer_id: int, now: dt.datetime
) -> dict[str, Any]:
    """What the desktop shows of a customer of the utility: each service point with its
    meter, last readings and the outages at its address (on now or within three days),
    and the customer's connection requests."""
    cur = await conn.execute(
        """SELECT a.contract_no FROM accounts a JOIN service_points sp ON sp.account_id = a.id
           WHERE a.customer_id = %s ORDER BY a.contract_no""",
        (customer_id,),
    )
    points: list[dict[str, Any]] = []
    for (contract_no,) in await cur.fetchall():
        sp = await service_point(conn, contract_no=str(contract_no))
        if sp is None:
            continue
        item = {
            "contract_no": sp["contract_no"],
            "address": sp["address"],
            "tariff": {"code": sp["tariff"], "name": sp["tariff_name"], "zones": sp["zones"]},
            "meter": sp["meter"],
            "readings": await readings(conn, sp["meter_id"]) if sp["meter_id"] else [],
            "outages": await outages_at(conn, sp, now, dt.timedelta(days=3)),
        }
        points.append(item)
    cur = await conn.execute(
        "SELECT number FROM connection_requests WHERE customer_id = %s ORDER BY submitted_at DESC",
        (customer_id,),
    )
    requests = []
    for (number,) in await cur.fetchall():
        r = await connection_request(conn, str(number))
        if r is not None:
            requests.append(r)
    return {"service_points": points, "connection_requests": requests}
