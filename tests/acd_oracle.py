"""A pure-Python reference ACD: the same routing policy as core-rs/acd, written the naive
way (every decision scans every agent or call), to be fed the same events as the Rust
engine and produce identical decisions.

Policy, as both implement it:
- An agent serves a queue at the lowest expansion tier whose skill expression it matches
  (never, if none). A call at tier t may go to agents of tiers 0..t.
- A waiting call goes to the eligible Ready agent with the smallest strategy key, then the
  smallest id. Keys are taken when the agent becomes Ready: longest idle (ready since),
  least occupied (occupancy in ppm, ready since), most skilled (10 - level of the queue's
  first skill, ready since), round robin (this queue's offer counter at its last offer,
  ready since), fewest calls (handled, ready since).
- A freed agent first takes the best call reserved for it (preferred agent), by
  (priority desc, arrival); else, among the head of each of its queues' tiers it may
  serve, the call with the highest priority, then the earliest service-level breach
  (entered + threshold), then arrival. With a call found it goes straight to Offered.
- Timers fire in order of (time, kind, id) with kinds ordered offer deadline, wrap-up
  end, next tier, preferred end, max wait; each runs at its own time.
Weighted random is left out: its draws depend on the engine's internal bucket order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OFFER_DEADLINE, WRAP_UP_END, NEXT_TIER, PREFERRED_END, MAX_WAIT = range(5)
LOGIN, MISSED_OFFER = 0, 1


class Refused(Exception):
    pass


def parse(text: str) -> list[list[tuple[str, int]]]:
    """'a>=3 & b | c' -> [[('a', 3), ('b', 1)], [('c', 1)]] (or of ands of name>=level)."""
    alternatives = []
    for alt in text.split("|"):
        terms = []
        for term in alt.split("&"):
            name, _, level = term.strip().partition(">=")
            terms.append((name.strip(), int(level) if level else 1))
        alternatives.append(terms)
    return alternatives


def matches(expr: list[list[tuple[str, int]]], skills: list[tuple[str, int]]) -> bool:
    def level(name: str) -> int | None:
        for n, lv in skills:  # the first occurrence counts, as in the engine
            if n == name:
                return lv
        return None

    return any(all((lv := level(n)) is not None and lv >= want for n, want in alt) for alt in expr)


@dataclass
class Queue:
    name: str
    tiers: list[list[list[tuple[str, int]]]]
    expansions_after: list[int]
    strategy: str
    priority_weight: int = 0
    sl_threshold: int = 20_000
    wrap_up: int = 10_000
    offer_timeout: int = 15_000
    max_wait: int | None = None
    max_length: int | None = None
    overflow_queue: int | None = None
    overflow_external: int | None = None
    missed_limit: int = 1
    rr_counter: int = 0


@dataclass
class Agent:
    id: int
    memberships: dict[int, tuple[int, int]]  # queue -> (min tier, rank level)
    state: tuple[str, int | None] = ("not_ready", LOGIN)
    since: int = 0
    logged_in_at: int = 0
    pending: int | None = None
    wrap_extended: bool = False
    missed_in_row: int = 0
    handled: int = 0
    working_ms: int = 0  # offered + busy + wrap-up time, closed intervals
    last_rr: dict[int, int] = field(default_factory=dict)
    ready_key: dict[int, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Call:
    id: int
    queue: int
    priority: int
    seq: int
    first_enqueued: int
    entered: int = 0
    tier: int = 0
    state: str = "waiting"  # waiting, targeted, offered, in_service
    agent: int | None = None
    preferred: list[tuple[int, int]] = field(default_factory=list)


class OracleAcd:
    def __init__(self) -> None:
        self.queues: list[Queue] = []
        self.agents: dict[int, Agent] = {}
        self.calls: dict[int, Call] = {}
        self.timers: set[tuple[int, int, int]] = set()
        self.actions: list[tuple[Any, ...]] = []
        self.now = 0
        self.seq = 0

    # ---- configuration and events (mirroring the engine's public API) ----

    def add_queue(
        self, name: str, skills: str, expansions: list[tuple[int, str]], strategy: str, **kw: Any
    ) -> int:
        q = Queue(
            name,
            [parse(skills)] + [parse(e) for _, e in expansions],
            [t for t, _ in expansions],
            strategy,
            **kw,
        )
        self.queues.append(q)
        return len(self.queues) - 1

    def login(self, now: int, agent: int, skills: list[tuple[str, int]], queues: list[int]) -> None:
        now = self._tick(now)
        if agent in self.agents:
            raise Refused("already logged in")
        memberships: dict[int, tuple[int, int]] = {}
        for q in queues:
            if q >= len(self.queues):
                raise Refused("unknown queue")
            if q in memberships:
                continue
            queue = self.queues[q]
            tier = next((t for t, e in enumerate(queue.tiers) if matches(e, skills)), None)
            if tier is None:
                continue
            first = queue.tiers[0][0][0][0] if queue.tiers[0] and queue.tiers[0][0] else None
            rank = next((lv for n, lv in skills if n == first), 1)
            memberships[q] = (tier, min(max(rank, 1), 10))
        self.agents[agent] = Agent(agent, memberships, since=now, logged_in_at=now)

    def set_ready(self, now: int, agent: int) -> None:
        now = self._tick(now)
        a = self._agent(agent)
        kind = a.state[0]
        if kind == "wrap_up":
            a.pending = None  # Ready said now wins over a Not ready asked during the call
            self.timers.discard((a.state[1] or 0, WRAP_UP_END, agent))
        elif kind in ("offered", "busy") and a.pending is not None:
            a.pending = None
            return
        elif kind != "not_ready":
            raise Refused("cannot become ready")
        a.missed_in_row = 0
        self._become_ready(now, agent)

    def set_not_ready(self, now: int, agent: int, reason: int) -> None:
        now = self._tick(now)
        a = self._agent(agent)
        kind = a.state[0]
        if kind in ("offered", "busy"):
            a.pending = reason
            return
        if a.state == ("not_ready", reason):
            raise Refused("same reason")
        if kind == "wrap_up":
            a.pending = None  # said now, it replaces a Not ready asked during the call
            self.timers.discard((a.state[1] or 0, WRAP_UP_END, agent))
        self._set_state(now, agent, ("not_ready", reason))

    def logout(self, now: int, agent: int) -> None:
        now = self._tick(now)
        a = self._agent(agent)
        if a.state[0] in ("offered", "busy"):
            raise Refused("on a call")
        if a.state[0] == "wrap_up":
            self.timers.discard((a.state[1] or 0, WRAP_UP_END, agent))
        self._set_state(now, agent, ("logged_out", None))
        targeted = sorted(
            (
                c
                for c in self.calls.values()
                if c.state == "targeted" and any(p == agent for p, _ in c.preferred)
            ),
            key=lambda c: (-c.priority, c.seq),
        )
        for c in targeted:
            if c.state == "targeted":
                c.preferred = [(p, u) for p, u in c.preferred if p != agent]
                self._requeue(now, c.id)
        del self.agents[agent]

    def enqueue(
        self, now: int, call: int, queue: int, priority: int, preferred: list[tuple[int, int]]
    ) -> None:
        now = self._tick(now)
        if call in self.calls:
            raise Refused("duplicate")
        if queue >= len(self.queues):
            raise Refused("unknown queue")
        q = self.queues[queue]
        target = queue
        while q.max_length is not None:
            queued = sum(
                1
                for c in self.calls.values()
                if c.queue == target and c.state in ("waiting", "targeted")
            )
            if queued < q.max_length:
                break
            if q.overflow_queue is not None:
                target = q.overflow_queue
                q = self.queues[target]
            elif q.overflow_external is not None:
                self.actions.append(("left", call, target, "overflowed", q.overflow_external, 0))
                return
            else:
                raise Refused("full")
        if target != queue:
            self.actions.append(("moved", call, queue, target))
        queue = target
        self.seq += 1
        pref = [(a, u) for a, u in preferred if u > now and a in self.agents]
        self.calls[call] = Call(
            call, queue, priority + q.priority_weight, self.seq, now, preferred=pref
        )
        self._enter_queue(now, call, queue)

    def answer(self, now: int, call: int) -> None:
        now = self._tick(now)
        c = self._call(call)
        if c.state != "offered":
            raise Refused("not offered")
        agent = c.agent
        assert agent is not None
        self._disarm(call)
        c.state = "in_service"
        self.agents[agent].missed_in_row = 0
        self._set_state(now, agent, ("busy", call))
        self.actions.append(("left", call, c.queue, "answered", agent, now - c.first_enqueued))

    def reject(self, now: int, call: int) -> None:
        now = self._tick(now)
        if self._call(call).state != "offered":
            raise Refused("not offered")
        self._missed_offer(now, call, timed_out=False)

    def hangup(self, now: int, call: int) -> None:
        now = self._tick(now)
        c = self._call(call)
        if c.state == "in_service":
            self.end_call(now, call)
            return
        if c.state == "offered":
            agent = c.agent
            assert agent is not None
            self._disarm(call, OFFER_DEADLINE)
            self.actions.append(("revoke", call, agent))
            self._release_agent(now, agent, missed=False)
        self._finish(now, call, "abandoned", None)

    def end_call(self, now: int, call: int) -> None:
        now = self._tick(now)
        c = self._call(call)
        if c.state != "in_service":
            raise Refused("not in service")
        agent = c.agent
        assert agent is not None
        del self.calls[call]
        wrap = self.queues[c.queue].wrap_up
        self.agents[agent].handled += 1
        if wrap == 0:
            self._after_work(now, agent)
        else:
            self.agents[agent].wrap_extended = False
            self.timers.add((now + wrap, WRAP_UP_END, agent))
            self._set_state(now, agent, ("wrap_up", now + wrap))

    def end_wrap_up(self, now: int, agent: int) -> None:
        now = self._tick(now)
        a = self._agent(agent)
        if a.state[0] != "wrap_up":
            raise Refused("not in wrap-up")
        self.timers.discard((a.state[1] or 0, WRAP_UP_END, agent))
        self._after_work(now, agent)

    def extend_wrap_up(self, now: int, agent: int, extra: int) -> int:
        now = self._tick(now)
        a = self._agent(agent)
        if a.state[0] != "wrap_up" or a.wrap_extended:
            raise Refused("not in wrap-up, or extended already")
        until = a.state[1] or 0
        later = max(until, now) + extra
        a.wrap_extended = True
        a.state = ("wrap_up", later)  # the same stretch of wrap-up, a later end
        self.timers.discard((until, WRAP_UP_END, agent))
        self.timers.add((later, WRAP_UP_END, agent))
        return later

    def handle_timeout(self, now: int) -> None:
        now = self._tick(now)
        while self.timers:
            t, kind, ident = min(self.timers)
            if t > now:
                break
            self.timers.discard((t, kind, ident))
            if kind == WRAP_UP_END:
                self._after_work(t, ident)
            elif kind == OFFER_DEADLINE:
                self._missed_offer(t, ident, timed_out=True)
            elif kind == NEXT_TIER:
                self._next_tier(t, ident)
            elif kind == PREFERRED_END:
                self._preferred_end(t, ident)
            else:
                self._max_wait(t, ident)

    def ready_order(self, queue: int) -> list[int]:
        ready = [
            a for a in self.agents.values() if a.state[0] == "ready" and queue in a.memberships
        ]
        return [a.id for a in sorted(ready, key=lambda a: (a.ready_key[queue], a.id))]

    def agent_state(self, agent: int) -> tuple[str, int | None] | None:
        a = self.agents.get(agent)
        return None if a is None else a.state

    # ---- internals ----

    def _tick(self, now: int) -> int:
        self.now = max(self.now, now)
        return self.now

    def _agent(self, agent: int) -> Agent:
        if agent not in self.agents:
            raise Refused("unknown agent")
        return self.agents[agent]

    def _call(self, call: int) -> Call:
        if call not in self.calls:
            raise Refused("unknown call")
        return self.calls[call]

    def _disarm(self, call: int, kind: int | None = None) -> None:
        for t in [
            t for t in self.timers if t[2] == call and t[1] != WRAP_UP_END and kind in (None, t[1])
        ]:
            self.timers.discard(t)

    def _set_state(self, now: int, agent: int, state: tuple[str, int | None]) -> None:
        a = self.agents[agent]
        if a.state[0] in ("offered", "busy", "wrap_up"):
            a.working_ms += now - a.since
        a.since = now
        a.state = state
        a.ready_key.clear()

    def _index_ready(self, now: int, agent: int) -> None:
        a = self.agents[agent]
        logged = max(now - a.logged_in_at, 1)
        occupancy = min(a.working_ms * 1_000_000 // logged, 1_000_000)
        for q, (_, rank) in a.memberships.items():
            a.ready_key[q] = {
                "longest_idle": (now, 0),
                "least_occupied": (occupancy, now),
                "most_skilled": (10 - rank, now),
                "round_robin": (a.last_rr.get(q, 0), now),
                "fewest_calls": (a.handled, now),
            }[self.queues[q].strategy]

    def _enter_queue(self, now: int, call: int, queue: int) -> None:
        q = self.queues[queue]
        c = self.calls[call]
        c.queue, c.entered, c.tier = queue, now, 0
        if q.max_wait is not None:
            self.timers.add((now + q.max_wait, MAX_WAIT, call))
        if q.expansions_after:
            self.timers.add((now + q.expansions_after[0], NEXT_TIER, call))
        if c.preferred:
            c.state = "targeted"
            self.timers.add((min(u for _, u in c.preferred), PREFERRED_END, call))
            self._route_targeted(now, call)
        else:
            c.state = "waiting"
            self._route_call(now, call)

    def _route_call(self, now: int, call: int) -> None:
        c = self.calls[call]
        eligible = [
            (a.ready_key[c.queue], a.id)
            for a in self.agents.values()
            if a.state[0] == "ready"
            and c.queue in a.memberships
            and a.memberships[c.queue][0] <= c.tier
        ]
        if eligible:
            self._offer(now, call, min(eligible)[1])

    def _route_targeted(self, now: int, call: int) -> None:
        for agent, _ in self.calls[call].preferred:
            a = self.agents.get(agent)
            if a is not None and a.state[0] == "ready":
                self._offer(now, call, agent)
                return

    def _offer(self, now: int, call: int, agent: int) -> None:
        c = self.calls[call]
        q = self.queues[c.queue]
        c.state, c.agent = "offered", agent
        q.rr_counter += 1
        a = self.agents[agent]
        if c.queue in a.memberships:
            a.last_rr[c.queue] = q.rr_counter
        deadline = now + q.offer_timeout
        self.timers.add((deadline, OFFER_DEADLINE, call))
        self._set_state(now, agent, ("offered", call))
        self.actions.append(("offer", call, agent, c.queue, deadline))

    def _missed_offer(self, now: int, call: int, timed_out: bool) -> None:
        c = self.calls.get(call)
        if c is None or c.state != "offered":
            return
        agent = c.agent
        assert agent is not None
        c.preferred = [(p, u) for p, u in c.preferred if p != agent]
        self._disarm(call, OFFER_DEADLINE)
        if timed_out:
            self.actions.append(("revoke", call, agent))
        self._requeue(now, call)
        self._release_agent(now, agent, missed=True)

    def _requeue(self, now: int, call: int) -> None:
        c = self.calls[call]
        c.preferred = [(p, u) for p, u in c.preferred if p in self.agents]
        if not c.preferred:
            self._disarm(call, PREFERRED_END)
            c.state = "waiting"
            self._route_call(now, call)
        else:
            c.state = "targeted"
            self._route_targeted(now, call)

    def _release_agent(self, now: int, agent: int, missed: bool) -> None:
        a = self.agents[agent]
        limit = 0
        if a.state[0] == "offered" and a.state[1] in self.calls:
            limit = self.queues[self.calls[a.state[1]].queue].missed_limit
        if missed:
            a.missed_in_row += 1
        if a.pending is not None:
            reason, a.pending = a.pending, None
            self._set_state(now, agent, ("not_ready", reason))
        elif missed and limit > 0 and a.missed_in_row >= limit:
            self._set_state(now, agent, ("not_ready", MISSED_OFFER))
        else:
            self._become_ready(now, agent)

    def _after_work(self, now: int, agent: int) -> None:
        a = self.agents.get(agent)
        if a is None:
            return
        if a.pending is not None:
            reason, a.pending = a.pending, None
            self._set_state(now, agent, ("not_ready", reason))
        else:
            self._become_ready(now, agent)

    def _become_ready(self, now: int, agent: int) -> None:
        a = self.agents[agent]
        reserved = [
            c
            for c in self.calls.values()
            if c.state == "targeted" and any(p == agent for p, _ in c.preferred)
        ]
        if reserved:
            self._offer(now, min(reserved, key=lambda c: (-c.priority, c.seq)).id, agent)
            return
        best: tuple[tuple[int, int, int], int] | None = None
        for q, (min_tier, _) in a.memberships.items():
            queue = self.queues[q]
            for tier in range(min_tier, len(queue.tiers)):
                waiting = [
                    c
                    for c in self.calls.values()
                    if c.queue == q and c.state == "waiting" and c.tier == tier
                ]
                if not waiting:
                    continue
                head = min(waiting, key=lambda c: (-c.priority, c.seq))
                key = (-head.priority, head.entered + queue.sl_threshold, head.seq)
                if best is None or key < best[0]:
                    best = (key, head.id)
        if best is not None:
            self._offer(now, best[1], agent)
        else:
            self._set_state(now, agent, ("ready", None))
            self._index_ready(now, agent)

    def _next_tier(self, now: int, call: int) -> None:
        c = self.calls.get(call)
        if c is None:
            return
        q = self.queues[c.queue]
        if c.tier + 1 >= len(q.tiers):
            return
        c.tier += 1
        if c.tier < len(q.expansions_after):
            self.timers.add((max(c.entered + q.expansions_after[c.tier], now), NEXT_TIER, call))
        if c.state == "waiting":
            self._requeue(now, call)

    def _preferred_end(self, now: int, call: int) -> None:
        c = self.calls.get(call)
        if c is None:
            return
        c.preferred = [(p, u) for p, u in c.preferred if u > now]
        if c.preferred:
            self.timers.add((min(u for _, u in c.preferred), PREFERRED_END, call))
        if c.state == "targeted":
            self._requeue(now, call)

    def _max_wait(self, now: int, call: int) -> None:
        c = self.calls.get(call)
        if c is None or c.state not in ("waiting", "targeted"):
            return
        q = self.queues[c.queue]
        if q.overflow_queue is not None:
            self._disarm(call)
            c.preferred = []
            self.actions.append(("moved", call, c.queue, q.overflow_queue))
            self._enter_queue(now, call, q.overflow_queue)
        elif q.overflow_external is not None:
            self._finish(now, call, "overflowed", q.overflow_external)
        else:
            self._finish(now, call, "timed_out", None)

    def _finish(self, now: int, call: int, outcome: str, detail: int | None) -> None:
        self._disarm(call)
        c = self.calls.pop(call)
        self.actions.append(("left", call, c.queue, outcome, detail, now - c.first_enqueued))
