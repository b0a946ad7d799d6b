"""Prometheus metrics of one ccorch node, in a registry owned by the app (no import-time globals).

Every metric ccorch defines is named ``cc_*``; process metrics (CPU, memory, file
descriptors) come from prometheus-client's own collectors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ccorch.calls import MOS_BUCKETS

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "SipCollector"]


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
    media_srtp_rejected: Counter
    case_overdue_alarms: Counter
    cases_overdue: Gauge
    email_received: Counter
    email_replies: Counter
    email_mailbox_up: Gauge

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
            media_srtp_rejected=Counter(
                "cc_media_srtp_rejected",
                "Packets dropped on SRTP legs (failed authentication, replays, clear text),"
                " by kind (rtp, rtcp)",
                ["kind"],
                registry=registry,
            ),
            case_overdue_alarms=Counter(
                "cc_case_overdue_alarms",
                "Cases that passed their SLA deadline unresolved (each counted once), by kind",
                ["kind"],
                registry=registry,
            ),
            cases_overdue=Gauge(
                "cc_cases_overdue",
                "Open cases past their SLA deadline (as of the last overdue check)",
                registry=registry,
            ),
            email_received=Counter(
                "cc_email_received",
                "Messages read from the center's mailbox and kept, by whether each opened a"
                " new case (new) or joined one (thread)",
                ["kind"],
                registry=registry,
            ),
            email_replies=Counter(
                "cc_email_replies",
                "Replies handed to the SMTP server (sent) or refused by it for good (failed)",
                ["state"],
                registry=registry,
            ),
            email_mailbox_up=Gauge(
                "cc_email_mailbox_up",
                "1 if the last look at the center's mailbox worked, 0 if not (absent while"
                " e-mail is off)",
                registry=registry,
            ),
        )

    def __post_init__(self) -> None:
        # known label values start at 0: a series that never went up is still there
        for kind in ("instant", "escalation", "dispatch"):  # cases.kind
            self.case_overdue_alarms.labels(kind=kind)
        for kind in ("rtp", "rtcp"):
            self.media_srtp_rejected.labels(kind=kind)
        for kind in ("new", "thread"):
            self.email_received.labels(kind=kind)
        for state in ("sent", "failed"):
            self.email_replies.labels(state=state)

    def observe_media(self, stats: dict[str, float]) -> None:
        """Copy a ``MediaEngine.stats(reset=True)`` snapshot into the gauges."""
        self.media_legs.set(stats["legs"])
        self.media_rooms.set(stats["rooms"])
        self.media_recordings.set(stats["recordings"])
        self.media_tick_lateness_p99.set(stats["lateness_p99_ms"] / 1000)
        self.media_send_errors.set(stats["send_errors"])
        # counted since the last call (the engine's stats are read with reset)
        self.media_srtp_rejected.labels(kind="rtp").inc(stats.get("srtp_rejected", 0))
        self.media_srtp_rejected.labels(kind="rtcp").inc(stats.get("srtcp_rejected", 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class SipCollector(Collector):
    """SIP and call counters, read from the SIP service's own counters at scrape time (the
    signaling path only increments integers)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot()
        c: dict[str, int] = s["counters"]
        req = CounterMetricFamily(
            "cc_sip_requests_received", "SIP requests received, by method", labels=["method"]
        )
        resp_in = CounterMetricFamily(
            "cc_sip_responses_received", "SIP responses received, by class", labels=["class"]
        )
        resp_out = CounterMetricFamily(
            "cc_sip_responses_sent", "SIP responses sent, by class", labels=["class"]
        )
        ended = CounterMetricFamily("cc_calls_ended", "Calls ended, by reason", labels=["reason"])
        for k, v in sorted(c.items()):
            if k.startswith("in_request_"):
                req.add_metric([k[11:]], v)
            elif k.startswith("in_response_"):
                resp_in.add_metric([k[12:]], v)
            elif k.startswith("out_response_"):
                resp_out.add_metric([k[13:]], v)
            elif k.startswith("calls_ended_"):
                ended.add_metric([k[12:]], v)
        yield from (req, resp_in, resp_out, ended)
        for name, key, text in (
            ("cc_sip_malformed", "malformed", "SIP messages refused as malformed"),
            ("cc_sip_auth_failures", "auth_failures", "Failed digest authentications"),
            ("cc_sip_bans", "bans", "Sources banned after failed authentications"),
            ("cc_sip_dropped_rate", "dropped_rate", "Requests dropped over a source's rate limit"),
            ("cc_sip_dropped_banned", "dropped_banned", "Messages dropped from banned sources"),
            (
                "cc_sip_forbidden_invites",
                "forbidden_invites",
                "INVITEs refused: not a trunk or phone",
            ),
            (
                "cc_sip_transaction_timeouts",
                "client_timeouts",
                "Client transactions without answer",
            ),
            ("cc_sip_ack_timeouts", "ack_timeouts", "2xx to INVITE never acknowledged"),
            (
                "cc_sip_overload_rejects",
                "overload_rejects",
                "New calls refused with 503 while overloaded",
            ),
            (
                "cc_sip_limit_rejects",
                "limit_rejects",
                "Calls refused over a trunk's or a phone address's call limits",
            ),
            ("cc_calls_started", "calls_started", "Calls routed to a phone"),
            ("cc_calls_answered", "calls_answered", "Calls answered"),
        ):
            yield CounterMetricFamily(name, text, value=c.get(key, 0))
        measured = c.get("media_legs_measured", 0)
        got = CounterMetricFamily(
            "cc_media_packets_received",
            "RTP packets received on ended call legs, by side (caller, operator)",
            labels=["side"],
        )
        lost = CounterMetricFamily(
            "cc_media_packets_lost",
            "RTP packets lost on ended call legs, by side (caller, operator)",
            labels=["side"],
        )
        for side in ("caller", "operator"):
            got.add_metric([side], c.get(f"media_packets_received_{side}", 0))
            lost.add_metric([side], c.get(f"media_packets_lost_{side}", 0))
        yield from (got, lost)
        yield HistogramMetricFamily(
            "cc_media_leg_mos",
            "MOS estimate (E-model, from loss and jitter) of ended call legs",
            buckets=[
                *((str(b), c.get(f"media_mos_le_{b}", 0)) for b in MOS_BUCKETS),
                ("+Inf", measured),
            ],
            sum_value=c.get("media_mos_milli_sum", 0) / 1000,
        )
        for name, key, text in (
            ("cc_sip_dialogs", "dialogs", "SIP dialogs (call legs) open"),
            ("cc_sip_server_transactions", "server_transactions", "Server transactions alive"),
            ("cc_sip_client_transactions", "client_transactions", "Client transactions alive"),
            ("cc_sip_registered_contacts", "registered_contacts", "Registered phone contacts"),
            ("cc_sip_banned_sources", "bans", "Sources banned now"),
            ("cc_calls_active", "calls_active", "Calls in progress"),
            ("cc_events_subscribers", "event_clients", "Readers of the live event stream"),
            (
                "cc_sip_queue_delay_seconds",
                "queue_delay",
                "How long the last SIP datagram waited in the receive queue",
            ),
            ("cc_sip_shedding", "shedding", "1 while new calls are refused as overload"),
        ):
            yield GaugeMetricFamily(name, text, value=s.get(key, 0))
        yield CounterMetricFamily(
            "cc_events_readers_cut_off",
            "Event stream readers dropped for falling too far behind",
            value=s.get("event_clients_cut_off", 0),
        )
        yield GaugeMetricFamily(
            "cc_sip_tcp_connections",
            "SIP TCP connections accepted and open",
            value=s.get("tcp_connections", 0),
        )
        refused = CounterMetricFamily(
            "cc_sip_tcp_refused",
            "SIP TCP connections closed at accept, by the limit reached",
            labels=["limit"],
        )
        for limit in ("per_source", "total"):
            refused.add_metric([limit], s.get("tcp_refused", {}).get(limit, 0))
        yield refused
        closed = CounterMetricFamily(
            "cc_sip_tcp_timed_out",
            "SIP TCP connections closed for silence (no first message) or idleness",
            labels=["reason"],
        )
        for reason in ("silent", "idle"):
            closed.add_metric([reason], s.get("tcp_closed", {}).get(reason, 0))
        yield closed
        up = GaugeMetricFamily(
            "cc_sip_trunk_up", "1 if the trunk answers OPTIONS", labels=["trunk"]
        )
        for trunk, state in sorted(s["trunks_up"].items()):
            if state is not None:
                up.add_metric([trunk], 1 if state else 0)
        yield up
