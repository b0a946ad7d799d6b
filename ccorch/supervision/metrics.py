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
    media_legs: Gauge
    media_rooms: Gauge
    media_recordings: Gauge
    media_tick_lateness_p99: Gauge
    media_send_errors: Gauge
    case_overdue_alarms: Counter

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
            media_legs=Gauge(
                "cc_media_legs", "RTP legs allocated in the media engine", registry=registry
            ),
            media_rooms=Gauge(
                "cc_media_rooms",
                "Media rooms (bridges, conferences, supervised calls)",
                registry=registry,
            ),
            media_recordings=Gauge(
                "cc_media_recordings", "Recordings being written", registry=registry
            ),
            media_tick_lateness_p99=Gauge(
                "cc_media_tick_lateness_p99_seconds",
                "99th percentile of how late the media engine's 20 ms ticks ran since the last scrape",
                registry=registry,
            ),
            media_send_errors=Gauge(
                "cc_media_send_errors",
                "RTP packets the engine failed to send since start",
                registry=registry,
            ),
            case_overdue_alarms=Counter(
                "cc_case_overdue_alarms",
                "Cases that passed their SLA deadline unresolved (each counted once), by kind",
                ["kind"],
                registry=registry,
            ),
        )

    def observe_media(self, stats: dict[str, float]) -> None:
        """Copy a ``MediaEngine.stats(reset=True)`` snapshot into the gauges."""
        self.media_legs.set(stats["legs"])
        self.media_rooms.set(stats["rooms"])
        self.media_recordings.set(stats["recordings"])
        self.media_tick_lateness_p99.set(stats["lateness_p99_ms"] / 1000)
        self.media_send_errors.set(stats["send_errors"])

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
