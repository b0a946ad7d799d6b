"""The Rust ACD against the pure-Python oracle: the same random event sequences must give
identical decisions (offers, revocations, overflows, outcomes) and identical agent states,
and the engine's invariants must hold after every event."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccorch._core import Acd
from ccorch.errors import AcdError
from tests.acd_oracle import OracleAcd, Refused

STRATEGIES = ["longest_idle", "least_occupied", "most_skilled", "round_robin", "fewest_calls"]
SKILLS = ["g", "tech", "ru", "billing"]
AGENTS = range(1, 7)

QUEUES: list[dict[str, Any]] = [
    {"name": "general", "skills": "g", "expansions": [], "wrap_up": 2000, "sl_threshold": 20000},
    {
        "name": "tech",
        "skills": "tech>=5 & ru",
        "expansions": [(3000, "tech>=3"), (8000, "tech")],
        "max_wait": 20000,
        "overflow_queue": 0,
        "offer_timeout": 4000,
        "missed_limit": 2,
        "sl_threshold": 60000,
    },
    {
        "name": "billing",
        "skills": "billing | tech>=8",
        "expansions": [],
        "max_wait": 15000,
        "overflow_external": 1,
        "max_length": 4,
        "wrap_up": 0,
        "priority_weight": 3,
        "sl_threshold": 10000,
    },
]

# Every generated agent has every skill at some level, so several are usually eligible for
# the same call and the strategies' orderings decide.
skill_set = st.tuples(*[st.integers(1, 10) for _ in SKILLS]).map(
    lambda levels: list(zip(SKILLS, levels, strict=True))
)
agent = st.sampled_from(AGENTS)
# What each kind of event draws. Kinds are sampled with the weights below (one_of would
# not do: it treats a repeated strategy as one): state toggles, arrivals, answers and
# call ends are what make idle time, occupancy, handled counts and offer order differ.
BY_KIND: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "time": st.tuples(st.just("time"), st.integers(0, 6000)),
    "login": st.tuples(
        st.just("login"),
        agent,
        st.one_of(
            skill_set, st.lists(st.tuples(st.sampled_from(SKILLS), st.integers(1, 10)), max_size=3)
        ),
        st.lists(st.integers(0, 2), max_size=3),
    ),
    "logout": st.tuples(st.just("logout"), agent),
    "ready": st.tuples(st.just("ready"), agent),
    "not_ready": st.tuples(st.just("not_ready"), agent, st.integers(10, 11)),
    "enqueue": st.tuples(
        st.just("enqueue"),
        st.integers(0, 2),
        st.integers(0, 1),
        st.one_of(st.none(), st.none(), st.none(), st.tuples(agent, st.integers(0, 9000))),
    ),
    "answer": st.tuples(st.just("answer"), st.integers(0, 5)),
    "reject": st.tuples(st.just("reject"), st.integers(0, 5)),
    "hangup": st.tuples(st.just("hangup"), st.integers(0, 9)),
    "end": st.tuples(st.just("end"), st.integers(0, 5)),
    "end_wrap_up": st.tuples(st.just("end_wrap_up"), agent),
    "extend_wrap_up": st.tuples(st.just("extend_wrap_up"), agent, st.integers(1, 30_000)),
}
PROFILES = {
    # Agents come and go; calls mostly find someone free.
    "normal": {
        "time": 4,
        "login": 1,
        "logout": 1,
        "ready": 4,
        "not_ready": 3,
        "enqueue": 5,
        "answer": 4,
        "reject": 1,
        "hangup": 2,
        "end": 3,
        "end_wrap_up": 1,
        "extend_wrap_up": 1,
    },
    # Two agents in every queue, calls arriving faster than they are served: calls wait in
    # several queues at once, so a freed agent's choice across queues (priority, then the
    # nearest service-level breach) decides.
    "congested": {
        "time": 3,
        "ready": 1,
        "not_ready": 1,
        "enqueue": 6,
        "answer": 5,
        "reject": 1,
        "hangup": 1,
        "end": 5,
    },
}


def events_of(profile: str) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    kinds = [k for k, w in PROFILES[profile].items() for _ in range(w)]
    return st.lists(st.sampled_from(kinds).flatmap(BY_KIND.__getitem__), min_size=10, max_size=200)


def build(strategies: list[str]) -> tuple[Acd, OracleAcd]:
    acd, oracle = Acd(0), OracleAcd()
    for cfg, strategy in zip(QUEUES, strategies, strict=True):
        acd.add_queue(
            cfg["name"],
            cfg["skills"],
            strategy_name=strategy,
            expansions=cfg["expansions"],
            priority_weight=cfg.get("priority_weight", 0),
            sl_threshold_ms=cfg["sl_threshold"],
            wrap_up_ms=cfg.get("wrap_up", 10000),
            offer_timeout_ms=cfg.get("offer_timeout", 15000),
            max_wait_ms=cfg.get("max_wait"),
            max_length=cfg.get("max_length"),
            overflow_queue=cfg.get("overflow_queue"),
            overflow_external=cfg.get("overflow_external"),
            missed_offers_to_not_ready=cfg.get("missed_limit", 1),
        )
        kw = {k: v for k, v in cfg.items() if k not in ("name", "skills", "expansions")}
        oracle.add_queue(cfg["name"], cfg["skills"], cfg["expansions"], strategy, **kw)
    return acd, oracle


def decisions(actions: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [a for a in actions if a[0] != "agent"]


# A team that mostly can serve the queues: every example starts with it logged in and
# Ready (at staggered times, so idle-time orderings differ), then the random events run.
member = st.tuples(skill_set, st.lists(st.integers(0, 2), min_size=1, max_size=3))


def apply(
    target: Any,
    ev: tuple[Any, ...],
    now: int,
    new_call: int,
    offered: list[int],
    live: list[int],
    in_service: list[int],
) -> bool:
    """Apply one event to the engine or the oracle; False when it was refused."""
    kind = ev[0]
    try:
        if kind == "login":
            target.login(now, ev[1], ev[2], ev[3])
        elif kind == "logout":
            target.logout(now, ev[1])
        elif kind == "ready":
            target.set_ready(now, ev[1])
        elif kind == "not_ready":
            target.set_not_ready(now, ev[1], ev[2])
        elif kind == "enqueue":
            pref = [] if ev[3] is None else [(ev[3][0], now + ev[3][1])]
            target.enqueue(now, new_call, ev[1], ev[2], pref)
        elif kind in ("answer", "reject"):
            getattr(target, kind)(now, offered[ev[1] % len(offered)] if offered else 999_999)
        elif kind == "hangup":
            target.hangup(now, live[ev[1] % len(live)] if live else 999_999)
        elif kind == "end":
            target.end_call(now, in_service[ev[1] % len(in_service)] if in_service else 999_999)
        elif kind == "end_wrap_up":
            target.end_wrap_up(now, ev[1])
        elif kind == "extend_wrap_up":
            target.extend_wrap_up(now, ev[1], ev[2])
    except (AcdError, Refused):
        return False
    return True


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("strategy", STRATEGIES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_rust_acd_decides_exactly_as_the_python_oracle(
    strategy: str, profile: str, data: st.DataObject
) -> None:
    team: list[tuple[list[tuple[str, int]], list[int]]]
    if profile == "congested":
        team = data.draw(st.lists(st.tuples(skill_set, st.just([0, 1, 2])), min_size=2, max_size=2))
    else:
        team = data.draw(st.lists(member, min_size=3, max_size=3))
    events: list[tuple[Any, ...]] = data.draw(events_of(profile))
    acd, oracle = build([strategy] * 3)
    prelude: list[tuple[Any, ...]] = []
    # A few agents to start (more log in through the events), Ready at staggered times.
    for agent_id, (skills, queues) in zip(AGENTS, team, strict=False):
        prelude += [("login", agent_id, skills, queues), ("ready", agent_id), ("time", 700)]
    events = prelude + events
    now = 0
    next_call = 1
    offered: list[int] = []  # calls ringing, in the order offered
    live: list[int] = []  # calls queued, ringing or in service
    in_service: list[int] = []
    for step, ev in enumerate(events):
        kind = ev[0]
        if kind == "time":
            now += ev[1]
            acd.handle_timeout(now)
            oracle.handle_timeout(now)
            rust_ok = oracle_ok = True
        else:
            rust_ok = apply(acd, ev, now, next_call, offered, live, in_service)
            oracle_ok = apply(oracle, ev, now, next_call, offered, live, in_service)
            if kind == "enqueue" and rust_ok:
                live.append(next_call)
            if kind == "enqueue":
                next_call += 1
            if kind == "reject" and rust_ok:
                offered.remove(offered[ev[1] % len(offered)])
        assert rust_ok == oracle_ok, f"step {step} {ev}: rust ok={rust_ok}, oracle ok={oracle_ok}"
        got = decisions(acd.poll_actions())
        want = oracle.actions
        oracle.actions = []
        assert got == want, f"step {step} {ev}: rust {got} != oracle {want}"
        for a in got:
            if a[0] == "offer":
                offered.append(a[1])
            elif a[0] == "revoke" and a[1] in offered:
                offered.remove(a[1])
            elif a[0] == "left":
                if a[1] in offered:
                    offered.remove(a[1])
                live.remove(a[1])
                if a[3] == "answered":
                    in_service.append(a[1])
        in_service = [c for c in in_service if acd.serving_agent(c) is not None]
        for agent_id in AGENTS:
            assert acd.agent_state(agent_id) == oracle.agent_state(agent_id), (
                f"step {step} {ev}: agent {agent_id}"
            )
        for q in range(len(QUEUES)):
            assert acd.ready_order(q) == oracle.ready_order(q), (
                f"step {step} {ev}: queue {q} pick order"
            )
        assert acd.check_invariants() is None, acd.check_invariants()
