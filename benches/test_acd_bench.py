"""The ACD routing workload through the Python API, and side by side with the pure-Python
oracle (tests/acd_oracle.py) on the same smaller workload.

Run: .venv/bin/python -m pytest benches/test_acd_bench.py --benchmark-only -p no:cacheprovider
(after `scripts/setup.sh release`, so the extension is built with LTO).

One measured round = N decisions: a call in service ends (wrap-up 0), its agent takes the
most urgent waiting call it may serve (the decision), the new call is answered, and a new
caller joins a random queue so the number waiting stays constant.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import pytest

from ccorch._core import Acd
from tests.acd_oracle import OracleAcd

STRATEGIES = ["longest_idle", "most_skilled", "fewest_calls", "round_robin"]


class Workload:
    def __init__(
        self, target: Any, agents: int, skills: int, queues: int, calls: int, seed: int = 42
    ) -> None:
        rng = random.Random(seed)
        self.target, self.rng, self.queues = target, rng, queues
        self.now = 1
        queue_skill = [rng.randrange(skills) for _ in range(queues)]
        for q in range(queues):
            s = queue_skill[q]
            if isinstance(target, Acd):
                target.add_queue(
                    f"q{q}",
                    f"s{s}>=2",
                    strategy_name=STRATEGIES[q % 4],
                    wrap_up_ms=0,
                    expansions=[(30_000, f"s{s}")],
                )
            else:
                target.add_queue(
                    f"q{q}", f"s{s}>=2", [(30_000, f"s{s}")], STRATEGIES[q % 4], wrap_up=0
                )
        for a in range(agents):
            qs = [rng.randrange(queues) for _ in range(8)]
            sk = [(f"s{queue_skill[q]}", rng.randint(1, 10)) for q in qs] + [
                (f"s{rng.randrange(skills)}", rng.randint(1, 10)) for _ in range(2)
            ]
            target.login(0, a, sk, qs)
            target.set_ready(0, a)
        self.next_call = 0
        self.in_service: deque[int] = deque()
        for _ in range(calls):
            self.arrive()
        self.answer_offers()

    def drain(self) -> list[tuple[Any, ...]]:
        if isinstance(self.target, Acd):
            return self.target.poll_actions()
        out, self.target.actions = self.target.actions, []
        return out

    def arrive(self) -> None:
        self.target.enqueue(self.now, self.next_call, self.rng.randrange(self.queues), 0, [])
        self.next_call += 1

    def answer_offers(self) -> int:
        offers = [a[1] for a in self.drain() if a[0] == "offer"]
        for call in offers:
            self.target.answer(self.now, call)
            self.in_service.append(call)
        self.drain()
        return len(offers)

    def decisions(self, n: int) -> int:
        made = 0
        for _ in range(n):
            self.now += 1
            self.target.end_call(self.now, self.in_service.popleft())
            made += self.answer_offers()
            self.arrive()
            self.drain()
        return made


def run(benchmark: Any, workload: Workload, per_round: int, rounds: int) -> None:
    made = benchmark.pedantic(workload.decisions, args=(per_round,), rounds=rounds, iterations=1)
    assert made == per_round, "every freed agent must take a waiting call"
    benchmark.extra_info["decisions_per_round"] = per_round


@pytest.mark.benchmark(group="acd-full: 10k agents, 500 skills, 1k queues, 50k waiting")
def test_rust_acd_through_python_full_workload(benchmark: Any) -> None:
    run(
        benchmark,
        Workload(Acd(1), agents=10_000, skills=500, queues=1_000, calls=50_000),
        10_000,
        10,
    )


@pytest.mark.benchmark(group="acd-small: 1k agents, 50 skills, 100 queues, 5k waiting")
def test_rust_acd_through_python_small_workload(benchmark: Any) -> None:
    run(benchmark, Workload(Acd(1), agents=1_000, skills=50, queues=100, calls=5_000), 200, 10)


@pytest.mark.benchmark(group="acd-small: 1k agents, 50 skills, 100 queues, 5k waiting")
def test_python_oracle_small_workload(benchmark: Any) -> None:
    run(benchmark, Workload(OracleAcd(), agents=1_000, skills=50, queues=100, calls=5_000), 200, 3)
