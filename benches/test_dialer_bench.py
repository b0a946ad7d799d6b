"""One simulated campaign day (50 operators, 8 hours) per pacer, through the Python API.

Run: .venv/bin/python -m pytest benches/test_dialer_bench.py --benchmark-only -p no:cacheprovider
(after `scripts/setup.sh release`). The per-scenario comparison table over hundreds of
days is the Rust bench: `cargo bench -p ccorch-dialer --bench campaigns`.
"""

from __future__ import annotations

from typing import Any

import pytest

from ccorch.dialer import simulate_campaign

SCENARIO = {"p_live": 0.25, "talk_mean": 120.0}


@pytest.mark.benchmark(group="dialer: one 8-hour day, 50 operators, live 0.25, talk 120 s")
@pytest.mark.parametrize("pacer", ["progressive", "power:3.0", "vicidial", "predictive"])
def test_simulated_day(benchmark: Any, pacer: str) -> None:
    report = benchmark.pedantic(
        simulate_campaign, args=(SCENARIO, pacer, 1, 1), rounds=3, iterations=1
    )
    benchmark.extra_info["occupancy"] = round(report["occupancy"], 4)
    benchmark.extra_info["abandon_rate"] = round(report["abandon_rate"], 4)
    assert report["days"][0]["dialed"] > 0
