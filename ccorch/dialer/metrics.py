"""Running campaigns on /metrics: calls in flight, operators, abandon rates (24 h and 30
days, abandoned over live answers) and attempts by outcome, labelled by campaign."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ccorch.dialer.manager import OUTCOMES, CampaignManager


class CampaignCollector(Collector):
    """The running campaigns on /metrics (labelled by campaign name)."""

    def __init__(self, manager: CampaignManager) -> None:
        self.manager = manager

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        in_flight = GaugeMetricFamily(
            "cc_campaign_calls_in_flight",
            "A running campaign's calls now (ringing, being detected, waiting for an operator)",
            labels=["campaign"],
        )
        operators = GaugeMetricFamily(
            "cc_campaign_operators",
            "Operators logged in to a running campaign's queue and not on a break",
            labels=["campaign"],
        )
        rate = GaugeMetricFamily(
            "cc_campaign_abandon_ratio",
            "Abandoned over live answers of a running campaign, over the window",
            labels=["campaign", "window"],
        )
        attempts = CounterMetricFamily(
            "cc_campaign_attempts",
            "A running campaign's attempts ended since this node started, by outcome",
            labels=["campaign", "outcome"],
        )
        for run in list(self.manager.runs.values()):
            in_flight.add_metric([run.name], len(run.in_flight))
            operators.add_metric([run.name], len(run.agents))
            rates = self.manager.rates(run)
            for window in ("24h", "30d"):
                value = rates[f"abandon_rate_{window}"]
                rate.add_metric([run.name, window], value if value is not None else 0.0)
            for outcome in OUTCOMES:
                attempts.add_metric([run.name, outcome], run.outcomes.get(outcome, 0))
        yield from (in_flight, operators, rate, attempts)


__all__ = ["CampaignCollector"]
