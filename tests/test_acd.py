"""The ACD from Python, as the call controller will drive it: the seed's operator day,
typed errors for bad events and configuration, and the queueing math."""

from __future__ import annotations

import pytest

from ccorch.acd import (
    Acd,
    AgentChanged,
    CallLeft,
    Offer,
    decode,
    erlang_a,
    erlang_c,
    erlang_c_forecast,
    staffing_erlang_a,
    staffing_erlang_c,
)
from ccorch.errors import (
    AcdConfigError,
    IllegalTransition,
    QueueFull,
    QueueMathError,
    UnknownEntity,
)

S = 1000
LUNCH = 10  # the center's first reason (ccorch.acd.FIRST_CENTER_REASON)


def events(acd: Acd) -> list[object]:
    return [decode(a) for a in acd.poll_actions()]


def test_operator_day_from_the_seed() -> None:
    """Operators log in, choose a group and go Ready; the caller pressed 1 (technical
    support); the longest idle operator is rung, answers, talks, and works after the call
    ("Работаю") for the queue's seconds, then is Ready again; lunch applies after a call."""
    acd = Acd()
    tech = acd.add_queue("tech", "tech", wrap_up_ms=30 * S, sl_threshold_ms=20 * S)
    general = acd.add_queue("general", "general")
    acd.login(0, 7001, [("tech", 5), ("general", 3)], [tech, general])
    acd.login(0, 7002, [("tech", 7)], [tech])
    acd.set_ready(0, 7001)
    acd.set_ready(5 * S, 7002)
    events(acd)

    acd.enqueue(10 * S, 1, tech)
    assert events(acd) == [AgentChanged(7001, "offered", 1), Offer(1, 7001, tech, 25 * S)]
    acd.answer(13 * S, 1)
    assert CallLeft(1, tech, "answered", 7001, 3 * S) in events(acd)
    acd.set_not_ready(60 * S, 7001, LUNCH)  # asked during the call: waits for its end
    assert acd.agent_state(7001) == ("busy", 1)
    acd.end_call(193 * S, 1)
    assert acd.agent_state(7001) == ("wrap_up", 223 * S)
    assert acd.next_timeout() == 223 * S
    acd.handle_timeout(223 * S)
    assert acd.agent_state(7001) == ("not_ready", LUNCH)

    stats = acd.agent_stats(223 * S, 7001)
    assert stats["handled"] == 1
    assert stats["time_in_ms"]["busy"] == 180 * S and stats["time_in_ms"]["wrap_up"] == 30 * S
    assert stats["aht_seconds"] == 210.0
    q = acd.queue_stats(223 * S, tech)
    assert (q["answered"], q["service_level"], q["asa_seconds"]) == (1, 1.0, 3.0)
    assert q["agents"]["ready"] == 1 and q["agents"]["not_ready"] == 1
    assert acd.check_invariants() is None


def test_all_busy_caller_hears_position_and_wait_then_abandons() -> None:
    acd = Acd()
    tech = acd.add_queue("tech", "tech", wrap_up_ms=0, expected_handle_ms=120 * S)
    assert acd.queue_estimated_wait(0, tech) is None  # nobody works the queue: unknown
    acd.login(0, 1, [("tech", 5)], [tech])
    acd.set_ready(0, 1)
    acd.enqueue(0, 1, tech)
    acd.answer(0, 1)
    acd.end_call(120 * S, 1)  # history: one call of 120 s, as expected
    acd.enqueue(120 * S, 2, tech)
    acd.answer(120 * S, 2)
    acd.enqueue(121 * S, 3, tech)
    acd.enqueue(122 * S, 4, tech)
    assert acd.position(4) == 2
    # one operator, 120 s a call, nobody has abandoned yet: one call ahead, then its turn
    assert acd.estimated_wait(122 * S, 4) == pytest.approx(240.0)
    assert acd.queue_estimated_wait(122 * S, tech) == pytest.approx(360.0)
    assert acd.estimated_wait(122 * S, 2) is None  # being served (or ringing): not waiting
    events(acd)
    acd.hangup(150 * S, 4)
    assert events(acd) == [CallLeft(4, tech, "abandoned", None, 28 * S)]
    assert acd.queue_stats(150 * S, tech)["abandoned"] == 1


def test_bad_events_are_typed_errors_and_change_nothing() -> None:
    acd = Acd()
    q = acd.add_queue("q", "x", max_length=1)
    acd.login(0, 1, [("x", 1)], [q])
    with pytest.raises(IllegalTransition, match="already logged in"):
        acd.login(0, 1, [("x", 1)], [q])
    with pytest.raises(UnknownEntity):
        acd.set_ready(0, 99)
    with pytest.raises(UnknownEntity):
        acd.answer(0, 5)
    acd.enqueue(0, 1, q)
    with pytest.raises(QueueFull):
        acd.enqueue(0, 2, q)
    with pytest.raises(IllegalTransition):
        acd.end_call(0, 1)  # queued, not in service
    with pytest.raises(AcdConfigError, match="level 11"):
        acd.login(0, 2, [("x", 11)], [q])
    assert acd.agent_state(2) is None
    assert acd.waiting_calls == 1 and acd.logged_in_agents == 1
    assert acd.check_invariants() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"skills": "billing>=11"}, "at character 10: expected a level from 1 to 10"),
        ({"skills": "a & (b"}, "expected '\\)'"),
        (
            {"skills": "a", "strategy_name": "fastest"},
            "unknown strategy 'fastest'|unknown strategy \"fastest\"",
        ),
        ({"skills": "a", "overflow_queue": 5, "max_wait_ms": 1000}, "must be configured first"),
        ({"skills": "a", "overflow_queue": 0, "overflow_external": 1}, "not both"),
        ({"skills": "a", "expansions": [(0, "b")]}, "after 0"),
    ],
)
def test_bad_queue_configuration_is_refused_with_the_reason(
    kwargs: dict[str, object], message: str
) -> None:
    acd = Acd()
    with pytest.raises(AcdConfigError, match=message):
        acd.add_queue("q", **kwargs)  # type: ignore[arg-type]
    assert acd.add_queue("ok", "a") == 0  # nothing was half-added


def test_queueing_math_golden_values_and_domain_errors() -> None:
    assert erlang_c(500, 487.0) == pytest.approx(0.446475, abs=5e-6)
    a = erlang_a(50, 1000.0, 180.0, 120.0, 20.0)
    assert a["p_wait"] == pytest.approx(0.47, abs=0.005)
    assert a["p_abandon"] == pytest.approx(0.062, abs=0.0005)
    n = staffing_erlang_c(487.0, 180.0, service_level=0.8, within_seconds=20)
    assert erlang_c_forecast(n, 487.0, 180.0, 20.0)["service_level"] >= 0.8
    assert erlang_c_forecast(n - 1, 487.0, 180.0, 20.0)["service_level"] < 0.8
    assert staffing_erlang_a(1000.0, 180.0, 120.0, abandon_rate=0.03) > 50
    with pytest.raises(QueueMathError, match="traffic"):
        erlang_c(10, float("nan"))
    with pytest.raises(QueueMathError, match="steady state"):
        erlang_c_forecast(5, 6.0, 180.0, 20.0)
    with pytest.raises(QueueMathError, match="exactly one target"):
        staffing_erlang_c(5.0, 180.0, service_level=0.8)


class _Call:
    """A call as the ACD service sees it: records which phones it was asked to ring."""

    def __init__(self, call_id: int) -> None:
        self.id = call_id
        self.rung: list[str] = []

    def offer_to_agent(self, extension: str, queue: str) -> bool:
        self.rung.append(extension)
        return True

    def revoke_offer(self, extension: str) -> None:
        pass

    def left_queue(self, outcome: str, waited_ms: int) -> None:
        pass


@pytest.mark.parametrize("node_age_seconds", [0.0, 25.0, 3600.0])
def test_the_customers_manager_is_preferred_however_long_the_node_has_run(
    node_age_seconds: float,
) -> None:
    """The preference lasts ``prefer_seconds`` from the call's arrival in the queue, on the
    service's clock: a node up for an hour rings the manager as a node up for a second."""
    import asyncio

    from ccorch.acd.service import AcdService, AgentConfig, QueueConfig

    async def scenario() -> list[str]:
        service = AcdService(
            [QueueConfig("general", "general")],
            [
                AgentConfig("7003", {"general": 5}, ("general",)),
                AgentConfig("7004", {"general": 3}, ("general",)),
            ],
        )
        service.start()
        service._t0 -= node_age_seconds  # the node started this long ago
        service.phone_registered("7003")  # free longest: anyone's choice without a preference
        service.phone_registered("7004")  # the customer's manager
        call = _Call(1)
        service.enqueue(call, "general", priority=10, preferred=[("7004", 20.0)])
        return call.rung

    assert asyncio.run(scenario()) == ["7004"]


def test_an_operator_held_for_a_call_placed_for_them_gets_no_offer_until_released() -> None:
    """A preview shown or a personal callback dialing holds the operator (Not ready,
    "outbound"): a caller waits rather than taking them; released, they are offered it. A
    state the operator chose meanwhile is not undone by the release."""
    import asyncio

    from ccorch.acd import Reason
    from ccorch.acd.service import AcdService, AgentConfig, QueueConfig

    async def scenario() -> None:
        service = AcdService(
            [QueueConfig("general", "general")],
            [AgentConfig("7003", {"general": 5}, ("general",))],
        )
        service.start()
        service.phone_registered("7003")
        assert service.hold_for_outbound("7003")
        assert service.agent_state("7003") == ("not_ready", int(Reason.OUTBOUND))
        assert service.reason_name(int(Reason.OUTBOUND)) == "outbound"
        assert not service.hold_for_outbound("7003")  # not Ready: nothing more to hold
        call = _Call(1)
        service.enqueue(call, "general", priority=10)
        assert call.rung == []
        service.end_outbound("7003")
        assert call.rung == ["7003"]
        # an operator who went to lunch while held stays at lunch
        other = AcdService(
            [QueueConfig("general", "general")],
            [AgentConfig("7004", {"general": 5}, ("general",))],
        )
        other.set_reasons(["lunch"])
        other.start()
        other.phone_registered("7004")
        assert other.hold_for_outbound("7004")
        other.set_not_ready("7004", other.reasons["lunch"])
        other.end_outbound("7004")
        assert other.agent_state("7004") == ("not_ready", other.reasons["lunch"])

    asyncio.run(scenario())
