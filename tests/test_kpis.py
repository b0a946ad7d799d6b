"""The KPI tally (ccorch.supervision.kpis) without a node: outcomes, service level, short
abandons, handle time by phase, time per state, the day's roll at the center's midnight."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from ccorch.acd import AgentChanged, CallLeft
from ccorch.supervision.kpis import QueueKpis, QueueTarget

KYIV = ZoneInfo("Europe/Kyiv")


class Clock:
    def __init__(self, wall: dt.datetime) -> None:
        self.t = 1000.0
        self.start = wall

    def mono(self) -> float:
        return self.t

    def wall(self) -> dt.datetime:
        return self.start + dt.timedelta(seconds=self.t - 1000.0)


def kpis(clock: Clock) -> QueueKpis:
    return QueueKpis(
        {"tech": QueueTarget(20, 0.8), "sales": QueueTarget(30, 0.9)},
        short_abandon_seconds=5,
        tz=KYIV,
        mono=clock.mono,
        wall=clock.wall,
        reason_name=lambda code: {10: "lunch"}.get(code or -1, "login"),
        queue_name=lambda qid: ["tech", "sales"][qid],
    )


def left(k: QueueKpis, queue: int, outcome: str, waited: float, agent: int | None = None) -> None:
    k.on_acd(
        CallLeft(call=1, queue=queue, outcome=outcome, detail=agent, waited_ms=int(waited * 1000))
    )  # type: ignore[arg-type]


def test_outcomes_service_level_and_short_abandons() -> None:
    c = Clock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=KYIV))
    k = kpis(c)
    for _ in range(5):
        k.entered("tech")
    left(k, 0, "answered", 12, agent=7001)
    left(k, 0, "answered", 20)  # on the threshold: in service
    left(k, 0, "answered", 21)
    left(k, 0, "abandoned", 4.9)  # short
    left(k, 0, "abandoned", 40)
    t = k.total["tech"]
    assert t.entered == 5
    assert dict(t.calls) == {"answered": 3, "abandoned_short": 1, "abandoned": 1}
    assert t.answered_in_threshold == 2
    assert t.wait_seconds["answered"] == 53
    # service level = in threshold / (offered - short abandons) = 2 / 4
    assert t.answered_in_threshold / (sum(t.calls.values()) - t.calls["abandoned_short"]) == 0.5
    assert k.today["tech"].calls == t.calls
    # the histogram has the thresholds as buckets: 20 s is one, 30 s (sales) another
    assert 20.0 in k.buckets and 30.0 in k.buckets
    hist = k.wait_hist[("tech", "answered")]
    assert hist[k.buckets.index(15.0)] == 1 and hist[k.buckets.index(20.0)] == 1
    assert hist[k.buckets.index(30.0)] == 1
    assert k.total["sales"].entered == 0  # untouched


def test_handle_time_by_phase_goes_to_the_queue_of_the_operators_call() -> None:
    c = Clock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=KYIV))
    k = kpis(c)
    left(k, 1, "answered", 3, agent=7001)
    k.on_acd(AgentChanged(7001, "busy", 1))
    c.t += 100
    k.call_recorded("sales", "answered", talk=100, hold=30)
    k.on_acd(AgentChanged(7001, "wrap_up", 12345))
    c.t += 10
    k.on_acd(AgentChanged(7001, "wrap_up", 99999))  # extended: the same stretch
    c.t += 5
    k.on_acd(AgentChanged(7001, "ready", None))
    s = k.total["sales"]
    assert s.handled == 1
    assert dict(s.handle_seconds) == {"talk": 70, "hold": 30, "wrap_up": 15}
    k.call_recorded("sales", "abandoned", talk=0, hold=0)  # not handled
    k.call_recorded(None, None, talk=50, hold=0)  # a direct call: no queue
    assert s.handled == 1


def test_time_per_state_counts_open_stretches_and_reasons() -> None:
    c = Clock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=KYIV))
    k = kpis(c)
    k.on_acd(AgentChanged(7001, "ready", None))
    k.on_acd(AgentChanged(7002, "not_ready", 10))
    c.t += 60
    k.on_acd(AgentChanged(7001, "busy", 5))
    c.t += 30
    got = k.state_seconds_now()
    assert got[("ready", "")] == 60
    assert got[("busy", "")] == 30
    assert got[("not_ready", "lunch")] == 90
    k.on_acd(AgentChanged(7002, "logged_out", None))
    c.t += 100
    assert k.state_seconds_now()[("not_ready", "lunch")] == 90


def test_today_starts_again_at_the_centers_midnight() -> None:
    # 23:59:00 in Kyiv (21:59 UTC): one call before midnight, one after
    c = Clock(dt.datetime(2026, 3, 2, 23, 59, tzinfo=KYIV))
    k = kpis(c)
    k.on_acd(AgentChanged(7001, "ready", None))
    left(k, 0, "answered", 5)
    c.t += 120  # 00:01 on the 3rd
    left(k, 0, "answered", 5)
    assert k.total["tech"].calls["answered"] == 2
    assert k.today["tech"].calls["answered"] == 1
    assert k.day == dt.date(2026, 3, 3)
    # the ready stretch that spans midnight: 60 s yesterday, 60 s today
    assert round(k.state_seconds_now(today=True)[("ready", "")]) == 60
    assert round(k.state_seconds_now()[("ready", "")]) == 120


def test_the_days_figures_loaded_at_start_add_to_what_happens_next() -> None:
    c = Clock(dt.datetime(2026, 3, 2, 12, 0, tzinfo=KYIV))
    k = kpis(c)
    rows = [
        {"kind": "outcome", "queue": "tech", "key": "answered", "reason": None, "calls": 10,
         "seconds": 100.0, "in_threshold": 8, "hold": 0.0},
        {"kind": "handled", "queue": "tech", "key": None, "reason": None, "calls": 9,
         "seconds": 900.0, "in_threshold": 0, "hold": 60.0},
        {"kind": "state", "queue": None, "key": "not_ready", "reason": "lunch", "calls": 2,
         "seconds": 1800.0, "in_threshold": 0, "hold": 0.0},
        {"kind": "outcome", "queue": "gone", "key": "answered", "reason": None, "calls": 1,
         "seconds": 1.0, "in_threshold": 1, "hold": 0.0},
    ]  # fmt: skip
    k.load_today(dt.date(2026, 3, 1), rows)  # another day: ignored
    assert k.today["tech"].calls["answered"] == 0
    k.load_today(dt.date(2026, 3, 2), rows)
    left(k, 0, "answered", 30)
    t = k.today["tech"]
    assert (t.calls["answered"], t.answered_in_threshold, t.entered) == (11, 8, 10)
    assert (t.handled, t.handle_seconds["talk"], t.handle_seconds["hold"]) == (9, 900, 60)
    assert k.state_seconds_now(today=True)[("not_ready", "lunch")] == 1800
    assert k.total["tech"].calls["answered"] == 1  # the counters start at the node's start


def test_the_wallboards_figures_today_and_over_the_last_15_minutes() -> None:
    c = Clock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=KYIV))
    k = kpis(c)
    assert k.figures("tech")["service_level_15m"] is None  # nothing offered: no figure
    left(k, 0, "answered", 25)
    c.t += 1000  # over 15 minutes later: that call is out of the window, still today
    left(k, 0, "answered", 10)
    left(k, 0, "abandoned", 30)
    left(k, 0, "abandoned", 2)  # short: out of the rates
    f = k.figures("tech")
    assert (f["offered_15m"], f["service_level_15m"], f["abandon_rate_15m"]) == (3, 0.5, 0.5)
    assert f["asa_seconds_15m"] == 10
    assert (f["offered_today"], f["service_level_today"]) == (4, 1 / 3)
    assert f["asa_seconds_today"] == 17.5 and f["aht_seconds_today"] is None
    assert (f["service_level_threshold_seconds"], f["service_level_target"]) == (20, 0.8)
    assert k.figures("nowhere") == {}


def test_alarms_are_raised_once_follow_their_reading_and_clear() -> None:
    from ccorch.supervision.alarms import AlarmBoard, Conditions, Readings

    t0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=KYIV)
    board, judge = AlarmBoard(), Conditions()

    def reading(**kw: object) -> Readings:
        base: dict[str, object] = {
            "trunks_up": {"carrier": True, "backup": None},
            "queues": {"tech": {"waiting": 0, "agents": {"ready": 1}}},
            "refused_total": 0,
            "disk_free": 50,
            "disk_size": 100,
            "cases_overdue": 0,
        }
        return Readings(**(base | kw))  # type: ignore[arg-type]

    assert board.update(t0, judge.judge(reading(), 0)) == ([], [])
    bad = reading(
        trunks_up={"carrier": False, "backup": None},  # unknown (not probed): no alarm
        queues={
            "tech": {"waiting": 2, "agents": {"ready": 0}},
            "sales": {"waiting": 0, "agents": {"ready": 1}, "service_level_15m": 0.5,
                      "service_level_target": 0.8, "offered_15m": 6},
            "few": {"waiting": 0, "agents": {"ready": 1}, "service_level_15m": 0.0,
                    "service_level_target": 0.8, "offered_15m": 2},
        },
        refused_total=25,
        disk_free=5,
        cases_overdue=3,
    )  # fmt: skip
    raised, cleared = board.update(t0, judge.judge(bad, 10))
    assert {(a.kind, a.subject) for a in raised} == {
        ("trunk_down", "carrier"),
        ("no_operator", "tech"),
        ("service_level", "sales"),
        ("unauthorized", ""),
        ("disk", ""),
        ("cases_overdue", ""),
    }
    assert cleared == []
    bad.cases_overdue = 4
    again, _ = board.update(t0, judge.judge(bad, 20))
    assert again == []  # raised once; the detail follows
    assert board.active[("cases_overdue", "")].detail == {"cases": 4}
    # five minutes without new refusals, the rest back to normal: all cleared
    t1 = t0 + dt.timedelta(minutes=6)
    raised, cleared = board.update(t1, judge.judge(reading(refused_total=25), 400))
    assert raised == [] and len(cleared) == 6
    assert all(a.cleared_at == t1 for a in cleared)
    assert board.active == {}
