"""Prometheus metrics of one ccorch node, in a registry owned by the app (no import-time globals).

Every metric ccorch defines is named ``cc_*``; process metrics (CPU, memory, file
descriptors) come from prometheus-client's own collectors.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


@dataclass
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_request_seconds: Histogram
    http_in_flight: Gauge
    db_up: Gauge

    @classmethod
    def create(cls, version: str) -> Metrics:
        registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        Gauge(
            "cc_build_info", "ccorch version running on this node", ["version"], registry=registry
        ).labels(version=version).set(1)
        return cls(
            registry=registry,
            http_requests=Counter(
                "cc_http_requests",
                "HTTP requests answered, by route pattern, method and status",
                ["route", "method", "status"],
                registry=registry,
            ),
            http_request_seconds=Histogram(
                "cc_http_request_duration_seconds",
                "Time to answer an HTTP request, by route pattern",
                ["route"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                registry=registry,
            ),
            http_in_flight=Gauge(
                "cc_http_requests_in_flight", "HTTP requests being answered now", registry=registry
            ),
            db_up=Gauge(
                "cc_database_up",
                "1 if the last database health check succeeded, else 0",
                registry=registry,
            ),
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
