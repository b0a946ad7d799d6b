"""A campaign's calling rules, and when a contact may be called (sans-IO: times in, times
out, no clock read here).

- **Calling window** in the contact's own time zone: from ``window_start`` to
  ``window_end`` (e.g. 09:00–20:00) on the ``weekdays`` given (1 = Monday), never on a
  holiday (the campaign's, and the center's from the CRM), and only between the campaign's
  ``start_at`` and ``end_at``.
- **Retries** per outcome: ``busy``, ``no_answer``, ``machine``, ``failed`` each allow a
  number of attempts with a wait between them; once an outcome's attempts are used up the
  contact is finished (``None``: no next attempt). A retry that would fall outside the
  window moves to the window's next opening.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

Outcome = Literal["busy", "no_answer", "machine", "failed"]
HHMM = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class Retry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    attempts: Annotated[int, Field(ge=1, le=20)]
    interval_minutes: Annotated[float, Field(ge=1, le=7 * 24 * 60)]


def _retries() -> dict[Outcome, Retry]:
    return {
        "busy": Retry(attempts=3, interval_minutes=10),
        "no_answer": Retry(attempts=3, interval_minutes=60),
        "machine": Retry(attempts=2, interval_minutes=240),
        "failed": Retry(attempts=2, interval_minutes=30),
    }


class CallingRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    window_start: HHMM = "09:00"
    window_end: HHMM = "20:00"
    weekdays: Annotated[list[Annotated[int, Field(ge=1, le=7)]], Field(min_length=1)] = [
        1, 2, 3, 4, 5, 6,
    ]  # fmt: skip
    holidays: list[dt.date] = []
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None
    retries: dict[Outcome, Retry] = Field(default_factory=_retries)

    @model_validator(mode="after")
    def _coherent(self) -> CallingRules:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start (same day)")
        for name in ("start_at", "end_at"):
            when = getattr(self, name)
            if when is not None and when.tzinfo is None:
                raise ValueError(f"{name} needs its offset (e.g. Z)")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


def _time(hhmm: str) -> dt.time:
    h, m = hhmm.split(":")
    return dt.time(int(h), int(m))


def opening(
    rules: CallingRules, tz: ZoneInfo, at: dt.datetime, holidays: Iterable[dt.date] = ()
) -> dt.datetime | None:
    """The earliest instant at or after ``at`` when the contact may be called, in its time
    zone's calling window; None once the campaign has ended (or within a year nothing
    opens)."""
    off = set(rules.holidays) | set(holidays)
    start, end = _time(rules.window_start), _time(rules.window_end)
    if rules.start_at is not None and at < rules.start_at:
        at = rules.start_at
    local = at.astimezone(tz)
    for days in range(0, 366):
        day = local.date() + dt.timedelta(days=days)
        if day.isoweekday() not in rules.weekdays or day in off:
            continue
        # local wall-clock times; across a DST change the window keeps its wall clock
        opens = dt.datetime.combine(day, start, tz)
        closes = dt.datetime.combine(day, end, tz)
        candidate = max(opens, local) if days == 0 else opens
        if candidate < closes:
            result = candidate.astimezone(dt.UTC)
            if rules.end_at is not None and result >= rules.end_at:
                return None
            return result
    return None


def may_call(
    rules: CallingRules, tz: ZoneInfo, now: dt.datetime, holidays: Iterable[dt.date] = ()
) -> bool:
    """Whether ``now`` is inside the contact's calling window."""
    return opening(rules, tz, now, holidays) == now.astimezone(dt.UTC)


def next_attempt(
    rules: CallingRules,
    tz: ZoneInfo,
    outcome: Outcome,
    tried: Mapping[str, int],
    now: dt.datetime,
    holidays: Iterable[dt.date] = (),
) -> dt.datetime | None:
    """When to call again after ``outcome`` (``tried``: the attempts that ended so, this one
    included); None when its attempts are used up or the campaign ends first."""
    retry = rules.retries.get(outcome)
    if retry is None or tried.get(outcome, 0) >= retry.attempts:
        return None
    return opening(rules, tz, now + dt.timedelta(minutes=retry.interval_minutes), holidays)


__all__ = ["CallingRules", "Outcome", "Retry", "may_call", "next_attempt", "opening"]
