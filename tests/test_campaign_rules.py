"""Campaign calling rules (issue 19): the calling window in the contact's own time zone,
weekdays and holidays, the campaign's start and end, retries per outcome."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from ccorch.dialer.rules import CallingRules, may_call, next_attempt, opening

KYIV = ZoneInfo("Europe/Kyiv")
SHANGHAI = ZoneInfo("Asia/Shanghai")
UTC = dt.UTC


def kyiv(d: int, h: int, m: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, d, h, m, tzinfo=KYIV)


def test_the_window_is_the_contacts_own_time() -> None:
    rules = CallingRules()  # 09:00-20:00, Monday to Saturday
    # Monday 2 March 2026, 07:00 UTC: 09:00 in Kyiv (open), 15:00 in Shanghai (open)
    now = dt.datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    assert may_call(rules, KYIV, now) and may_call(rules, SHANGHAI, now)
    # 13:00 UTC: 15:00 in Kyiv, 21:00 in Shanghai (closed: opens at 09:00 there tomorrow)
    later = dt.datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    assert may_call(rules, KYIV, later) and not may_call(rules, SHANGHAI, later)
    assert opening(rules, SHANGHAI, later) == dt.datetime(2026, 3, 3, 9, 0, tzinfo=SHANGHAI)
    # Saturday evening after 20:00: Sunday is not a calling day, Monday 09:00 is
    assert opening(rules, KYIV, kyiv(7, 20, 30)) == kyiv(9, 9)


def test_holidays_weekdays_and_the_campaigns_dates() -> None:
    rules = CallingRules(
        weekdays=[1, 2, 3, 4, 5],
        holidays=[dt.date(2026, 3, 9)],
        start_at=kyiv(4, 12),
        end_at=kyiv(10, 12),
    )
    assert opening(rules, KYIV, kyiv(2, 10)) == kyiv(4, 12)  # not before the start
    assert opening(rules, KYIV, kyiv(6, 21)) == kyiv(10, 9)  # weekend, then a holiday
    assert opening(rules, KYIV, kyiv(6, 21), holidays=[dt.date(2026, 3, 10)]) is None
    assert opening(rules, KYIV, kyiv(10, 12)) is None  # the campaign has ended


def test_the_window_keeps_its_wall_clock_across_daylight_saving() -> None:
    # Kyiv moves to summer time on Sunday 29 March 2026: 09:00 is 07:00 UTC before, 06:00 after
    rules = CallingRules(weekdays=[1, 2, 3, 4, 5, 6, 7])
    assert opening(rules, KYIV, dt.datetime(2026, 3, 28, 21, tzinfo=UTC)) == dt.datetime(
        2026, 3, 29, 6, 0, tzinfo=UTC
    )
    assert opening(rules, KYIV, dt.datetime(2026, 3, 27, 21, tzinfo=UTC)) == dt.datetime(
        2026, 3, 28, 7, 0, tzinfo=UTC
    )


def test_retries_per_outcome_until_their_attempts_are_used() -> None:
    rules = CallingRules.model_validate(
        {"retries": {"busy": {"attempts": 2, "interval_minutes": 10},
                     "no_answer": {"attempts": 1, "interval_minutes": 60}}}
    )  # fmt: skip
    now = kyiv(2, 12)
    assert next_attempt(rules, KYIV, "busy", {"busy": 1}, now) == kyiv(2, 12, 10)
    assert next_attempt(rules, KYIV, "busy", {"busy": 2}, now) is None  # used up
    assert next_attempt(rules, KYIV, "no_answer", {"no_answer": 1}, now) is None
    assert next_attempt(rules, KYIV, "machine", {"machine": 1}, now) is None  # no retry set
    # a retry that would fall after 20:00 waits for the next opening
    assert next_attempt(rules, KYIV, "busy", {"busy": 1}, kyiv(2, 19, 55)) == kyiv(3, 9)


def test_bad_rules_are_refused_with_the_field() -> None:
    for bad in (
        {"window_start": "9am"},
        {"window_start": "20:00", "window_end": "09:00"},
        {"weekdays": [0]},
        {"retries": {"busy": {"attempts": 0, "interval_minutes": 5}}},
        {"retries": {"hangup": {"attempts": 1, "interval_minutes": 5}}},
        {"start_at": "2026-03-02T09:00:00"},
        {"colour": "red"},
    ):
        with pytest.raises(ValidationError):
            CallingRules.model_validate(bad)
