"""Dialer pacing from Python: the campaign manager's pacer, and the campaign simulator."""

from __future__ import annotations

import pytest

from ccorch.dialer import DialerPacer, simulate_campaign
from ccorch.errors import DialerParamError

SHORT_DAY = {"day_hours": 1.5, "agents": 20}


def test_simulation_is_reproducible_by_seed() -> None:
    a = simulate_campaign(SHORT_DAY, "predictive", seed=7, days=1)
    assert a == simulate_campaign(SHORT_DAY, "predictive", seed=7, days=1)
    assert a != simulate_campaign(SHORT_DAY, "predictive", seed=8, days=1)


def test_predictive_talks_more_than_progressive_within_the_legal_rate() -> None:
    progressive = simulate_campaign(SHORT_DAY, "progressive", seed=3, days=2)
    predictive = simulate_campaign(SHORT_DAY, "predictive", seed=3, days=2)
    assert sum(d["abandoned"] for d in progressive["days"]) == 0
    assert predictive["occupancy"] > progressive["occupancy"] + 0.1
    assert predictive["windows_over_3pct_24h"] == 0
    assert predictive["windows_over_3pct_30d"] == 0
    for day in predictive["days"]:
        assert day["rate_24h"] <= 0.03
        assert day["live"] > 0 and day["connected"] > 0


def test_pacer_waits_when_no_operator_can_be_free_in_time() -> None:
    pacer = DialerPacer("predictive", prior_talk_seconds=300.0)
    t = 0
    # Teach it that conversations last 300 s.
    for i in range(40):
        pacer.handle(t, "agent_joined", 100 + i)
        pacer.handle(t, "call_connected", i, agent=100 + i)
        pacer.handle(t + 300_000, "talk_ended", 100 + i)
        pacer.handle(t + 310_000, "agent_left", 100 + i)
        t += 1000
    pacer.handle(400_000, "agent_joined", 1)
    pacer.handle(400_000, "call_connected", 99, agent=1)
    assert pacer.dials(410_000) == 0  # 10 s into 300: nobody can take an answer soon
    pacer.handle(410_000, "agent_joined", 2)
    assert pacer.dials(410_250) >= 1


def test_spent_budget_falls_back_to_one_call_per_free_operator_and_rates_count_right() -> None:
    pacer = DialerPacer("predictive", amd_false_positive_share=0.0)
    for a in range(10):
        pacer.handle(0, "agent_joined", a)
    assert pacer.dials(0) == 10  # a day's first calls: one per free operator
    for c in range(40):  # the day's first answers: 10 people of 40 calls
        pacer.handle(100, "call_placed", 500 + c)
        if c % 4 == 0:
            pacer.handle(200, "call_answered", 500 + c, human=True)
        else:
            pacer.handle(200, "call_unanswered", 500 + c)
    assert pacer.dials(300) > 10  # then it overdials while nobody is busy
    for c in range(100):
        pacer.handle(1000, "call_placed", 1000 + c)
        pacer.handle(2000, "call_answered", 1000 + c, human=True)
    for c in range(5):
        pacer.handle(2500, "call_abandoned", 1000 + c)
    assert pacer.abandon_rate_30d(3000) == pytest.approx(5 / 110)
    assert pacer.abandon_rate_24h(3000) == pytest.approx(5 / 110)
    assert pacer.dials(3000) == 10


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: DialerPacer("turbo"), "unknown mode"),
        (lambda: DialerPacer("power"), "needs a ratio"),
        (lambda: DialerPacer("power", ratio=0.5), "ratio = 0.5: expected from 1 to 10"),
        (
            lambda: DialerPacer("predictive", prior_live_probability=1.2),
            "prior_live_probability = 1.2",
        ),
        (lambda: DialerPacer("predictive", prior_talk_seconds=-5.0), "prior_talk_seconds = -5"),
        (
            lambda: DialerPacer("predictive", utc_offset_minutes=900),
            "utc_offset_minutes = 900: expected from -840 to 840",
        ),
        (lambda: DialerPacer("predictive").handle(0, "call_answered", 1), "not a campaign event"),
        (lambda: simulate_campaign({"p_live": 1.5}, "predictive"), "p_live = 1.5"),
        (lambda: simulate_campaign({"no_answer_after": 10}, "predictive"), "at least 15 seconds"),
        (lambda: simulate_campaign({"talk_mean": -1}, "predictive"), "talk.mean"),
        (lambda: simulate_campaign({"agnets": 5}, "predictive"), 'unknown scenario key "agnets"'),
        (lambda: simulate_campaign({}, "power:abc"), "not a number"),
        (lambda: simulate_campaign({}, "magic"), "unknown pacer"),
    ],
)
def test_invalid_parameters_are_refused_with_the_reason(call: object, message: str) -> None:
    with pytest.raises(DialerParamError, match=message):
        call()  # type: ignore[operator]
