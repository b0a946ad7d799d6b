"""Admission of new calls by queue delay (sans-IO): a burst passes, a standing queue sheds."""

from __future__ import annotations

from ccorch.sip.admission import Admission


def test_a_burst_that_drains_within_the_interval_refuses_nothing() -> None:
    adm = Admission(target=0.05, interval=0.1, stale=0.25)
    t = 0.0
    for queued in (0.06, 0.08, 0.09, 0.07, 0.01):  # over the target for 40 ms, then drained
        t += 0.01
        adm.observe(t, queued)
        assert adm.admit(queued)
    assert not adm.standing and adm.refused == 0


def test_a_queue_standing_over_the_target_for_an_interval_sheds_until_it_drains() -> None:
    adm = Admission(target=0.05, interval=0.1, stale=0.25)
    t, admitted = 0.0, []
    for _ in range(30):  # 150 ms of datagrams that all waited 60-80 ms
        t += 0.005
        adm.observe(t, 0.07)
        admitted.append(adm.admit(0.07))
    assert admitted[:19] == [True] * 19  # the first interval: maybe a burst
    assert not any(admitted[21:])  # then a standing queue: new calls refused
    assert adm.standing and adm.refused in (9, 10)
    adm.observe(t + 0.005, 0.01)  # the first datagram read quickly: the queue has drained
    assert not adm.standing and adm.admit(0.01)


def test_an_invite_that_waited_past_stale_is_refused_on_its_own() -> None:
    adm = Admission(target=0.05, interval=0.1, stale=0.25)
    adm.observe(1.0, 0.3)
    assert not adm.standing
    assert not adm.admit(0.3)  # its caller has retransmitted it by now
    assert adm.admit(0.04)
