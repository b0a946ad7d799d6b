"""Writes ccorch's Grafana dashboards (``dashboards/grafana/dashboards/*.json``) from code,
with grafana-foundation-sdk pinned to Grafana 11's schema. Edit this file, not the JSON:

    .venv/bin/python dashboards/generate.py           # rewrite the JSON files
    .venv/bin/python dashboards/generate.py --check   # fail if they differ from this code

Every query uses the Prometheus data source chosen in the ``datasource`` variable, and the
recording rules of ``dashboards/prometheus/rules/ccorch.rules.yml`` (``cc_queue:*``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode, BigValueGraphMode
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
)

OUT = Path(__file__).resolve().parent / "grafana" / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
Panel = stat.Panel | timeseries.Panel | table.Panel | bargauge.Panel


def query(expr: str, legend: str = "", *, instant: bool = False, ref: str = "A") -> Dataquery:
    q = Dataquery().expr(expr).datasource(DS).ref_id(ref)
    if legend:
        q = q.legend_format(legend)
    return q.instant() if instant else q


def steps(*pairs: tuple[float | None, str]) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in pairs])
    )


LAST = ReduceDataOptions().calcs(["lastNotNull"])

# Wallboard colours (seed 004's 颜色标识): waiting and waits turn amber then red; service
# level is red under 70 %, amber under the usual 80 % target.
WAITING = steps((None, "green"), (3, "orange"), (10, "red"))
OLDEST = steps((None, "green"), (20, "orange"), (60, "red"))
LEVEL = steps((None, "red"), (0.7, "orange"), (0.8, "green"))
ABANDON = steps((None, "green"), (0.05, "orange"), (0.1, "red"))


def tile(title: str, expr: str, unit: str, colours: ThresholdsConfig, legend: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .datasource(DS)
        .with_target(query(expr, legend, instant=True))
        .reduce_options(LAST)
        .unit(unit)
        .thresholds(colours)
        .color_mode(BigValueColorMode.BACKGROUND)
        .graph_mode(BigValueGraphMode.NONE)
        .height(5)
        .span(6)
    )


def updown(title: str, expr: str, legend: str) -> stat.Panel:
    """1 green (up), 0 red (down)."""
    return tile(title, expr, "none", steps((None, "red"), (1, "green")), legend)


def graph(title: str, unit: str, *targets: Dataquery, span: int = 12) -> timeseries.Panel:
    p = timeseries.Panel().title(title).datasource(DS).unit(unit).height(8).span(span)
    for i, t in enumerate(targets):
        p = p.with_target(t.ref_id(chr(ord("A") + i)))
    return p


def datasource_var() -> DatasourceVariable:
    return DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def queue_var() -> QueryVariable:
    return (
        QueryVariable("queue")
        .label("Queue")
        .datasource(DS)
        .query("label_values(cc_queue_calls_waiting, queue)")
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
    )


def base(uid: str, title: str, description: str) -> Dashboard:
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["ccorch"])
        .refresh("10s")
        .time("now-1h", "now")
        .with_variable(datasource_var())
    )


def wallboard() -> Dashboard:
    by_queue = "{{queue}}"
    return (
        base(
            "ccorch-wallboard",
            "ccorch · Wallboard",
            "Every queue now: waiting, oldest wait, service level today and over 15 minutes,"
            " ASA, abandon rate; operators by state.",
        )
        .with_row(Row("Queues now"))
        .with_panel(
            tile(
                "Calls waiting",
                "sum by (queue) (cc_queue_calls_waiting)",
                "short",
                WAITING,
                by_queue,
            )
        )
        .with_panel(
            tile(
                "Oldest wait",
                "max by (queue) (cc_queue_oldest_wait_seconds)",
                "s",
                OLDEST,
                by_queue,
            )
        )
        .with_panel(
            tile(
                "Service level today",
                "cc_queue:service_level:today",
                "percentunit",
                LEVEL,
                by_queue,
            )
        )
        .with_panel(
            tile(
                "Service level, 15 min",
                "cc_queue:service_level:15m",
                "percentunit",
                LEVEL,
                by_queue,
            )
        )
        .with_row(Row("Today"))
        .with_panel(tile("ASA today", "cc_queue:asa_seconds:today", "s", OLDEST, by_queue))
        .with_panel(
            tile(
                "Abandon rate today",
                "cc_queue:abandon_rate:today",
                "percentunit",
                ABANDON,
                by_queue,
            )
        )
        .with_panel(
            tile("AHT today", "cc_queue:aht_seconds:today", "s", steps((None, "blue")), by_queue)
        )
        .with_panel(
            tile(
                "Offered today", "cc_queue:offered:today", "short", steps((None, "blue")), by_queue
            )
        )
        .with_row(Row("Operators"))
        .with_panel(
            bargauge.Panel()
            .title("Operators by state")
            .datasource(DS)
            .with_target(
                query('sum by (state) (cc_agents{state!="logged_out"})', "{{state}}", instant=True)
            )
            .height(6)
            .span(12)
        )
        .with_panel(
            tile(
                "Occupancy today", "cc:occupancy:today", "percentunit", steps((None, "blue")), "all"
            ).height(6)
        )
        .with_panel(
            tile(
                "Occupancy, 15 min", "cc:occupancy:15m", "percentunit", steps((None, "blue")), "all"
            ).height(6)
        )
    )


def queue_detail() -> Dashboard:
    q = 'queue="$queue"'
    return (
        base(
            "ccorch-queue",
            "ccorch · Queue detail",
            "One queue over time: load, outcomes, waits against the service-level threshold,"
            " handle time by phase and the operators who serve it.",
        )
        .with_variable(queue_var())
        .with_panel(
            graph(
                "Waiting and oldest wait",
                "short",
                query(f"cc_queue_calls_waiting{{{q}}}", "waiting"),
                query(f"cc_queue_oldest_wait_seconds{{{q}}}", "oldest wait (s)"),
            )
        )
        .with_panel(
            graph(
                "Calls leaving the queue per minute, by outcome",
                "short",
                query(
                    f"sum by (outcome) (rate(cc_queue_calls_total{{{q}}}[$__rate_interval])) * 60",
                    "{{outcome}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Service level and abandon rate, 15 min",
                "percentunit",
                query(f"cc_queue:service_level:15m{{{q}}}", "service level"),
                query(f"cc_queue_service_level_target_ratio{{{q}}}", "target"),
                query(f"cc_queue:abandon_rate:15m{{{q}}}", "abandon rate"),
            )
        )
        .with_panel(
            graph(
                "Wait of answered calls (90th percentile) and ASA, 15 min",
                "s",
                query(
                    "histogram_quantile(0.9, sum by (le) (rate(cc_queue_wait_seconds_bucket"
                    f'{{{q},outcome="answered"}}[$__rate_interval])))',
                    "p90 wait",
                ),
                query(f"cc_queue:asa_seconds:15m{{{q}}}", "ASA"),
                query(f"cc_queue_service_level_threshold_seconds{{{q}}}", "threshold"),
            )
        )
        .with_panel(
            graph(
                "Handle time by phase (average per call, 15 min)",
                "s",
                query(
                    f"sum by (phase) (increase(cc_queue_handle_seconds_total{{{q}}}[15m]))"
                    f" / scalar(sum(increase(cc_queue_calls_handled_total{{{q}}}[15m])) > 0)",
                    "{{phase}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Operators of the queue by state",
                "short",
                query(f"cc_queue_agents{{{q}}}", "{{state}}"),
            )
        )
        .with_panel(
            table.Panel()
            .title("Today")
            .datasource(DS)
            .with_target(query(f"cc_queue_calls_today{{{q}}}", "{{outcome}}", instant=True))
            .height(8)
            .span(24)
        )
    )


def agents() -> Dashboard:
    return (
        base(
            "ccorch-agents",
            "ccorch · Operators",
            "Operators by state and not-ready reason, time per state, occupancy.",
        )
        .with_panel(
            graph("Operators by state", "short", query("sum by (state) (cc_agents)", "{{state}}"))
        )
        .with_panel(
            graph(
                "Not ready, by reason",
                "short",
                query("sum by (reason) (cc_agents_not_ready)", "{{reason}}"),
            )
        )
        .with_panel(
            graph(
                "Operators in each state on average (time per state per second)",
                "short",
                query(
                    "sum by (state) (rate(cc_agent_state_seconds_total[$__rate_interval]))",
                    "{{state}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Occupancy",
                "percentunit",
                query("cc:occupancy:15m", "15 min"),
                query("cc:occupancy:today", "today"),
            )
        )
        .with_panel(
            table.Panel()
            .title("Time today per state and reason")
            .datasource(DS)
            .with_target(
                query("cc_agent_state_seconds_today > 0", "{{state}} {{reason}}", instant=True)
            )
            .unit("s")
            .height(8)
            .span(24)
        )
    )


def sip_media() -> Dashboard:
    return (
        base(
            "ccorch-sip-media",
            "ccorch · SIP and media quality",
            "Signaling (responses by class, trunks, registrations, refusals) and voice quality"
            " (loss, MOS) of the calls.",
        )
        .with_panel(
            graph(
                "SIP responses sent per second, by class",
                "reqps",
                query(
                    "sum by (class) (rate(cc_sip_responses_sent_total[$__rate_interval]))",
                    "{{class}}",
                ),
            )
        )
        .with_panel(
            graph(
                "SIP requests received per second, by method",
                "reqps",
                query(
                    "sum by (method) (rate(cc_sip_requests_received_total[$__rate_interval]))",
                    "{{method}}",
                ),
            )
        )
        .with_panel(updown("Trunks up", "cc_sip_trunk_up", "{{trunk}}").span(8))
        .with_panel(
            tile(
                "Registered phones",
                "cc_sip_registered_contacts",
                "short",
                steps((None, "blue")),
                "",
            ).span(8)
        )
        .with_panel(
            tile("Calls in progress", "cc_calls_active", "short", steps((None, "blue")), "").span(8)
        )
        .with_panel(
            graph(
                "Refused and failed per minute",
                "short",
                query("rate(cc_sip_auth_failures_total[$__rate_interval]) * 60", "auth failures"),
                query("rate(cc_sip_malformed_total[$__rate_interval]) * 60", "malformed"),
                query(
                    "rate(cc_sip_forbidden_invites_total[$__rate_interval]) * 60",
                    "INVITEs not from a trunk or phone",
                ),
            )
        )
        .with_panel(
            graph(
                "RTP loss on ended calls, by side",
                "percentunit",
                query(
                    "sum by (side) (increase(cc_media_packets_lost_total[15m]))"
                    " / (sum by (side) (increase(cc_media_packets_received_total[15m])"
                    " + increase(cc_media_packets_lost_total[15m])) > 0)",
                    "{{side}}",
                ),
            )
        )
        .with_panel(
            graph(
                "MOS of ended call legs (10th percentile and average, 15 min)",
                "none",
                query(
                    "histogram_quantile(0.1, sum by (le) (increase(cc_media_leg_mos_bucket[15m])))",
                    "p10",
                ),
                query(
                    "increase(cc_media_leg_mos_sum[15m]) / (increase(cc_media_leg_mos_count[15m]) > 0)",
                    "average",
                ),
            )
        )
    )


def node_health() -> Dashboard:
    return (
        base(
            "ccorch-node",
            "ccorch · Node health",
            "The node itself: up, CPU, memory, HTTP, database, media engine timing, event"
            " stream readers, recordings' disk.",
        )
        .with_panel(updown("Up", 'up{job="ccorch"}', "{{instance}}").span(6))
        .with_panel(updown("Database", "cc_database_up", "").span(6))
        .with_panel(
            tile(
                "Recordings disk free",
                "cc_recordings_disk_free_bytes / cc_recordings_disk_size_bytes",
                "percentunit",
                steps((None, "red"), (0.1, "orange"), (0.2, "green")),
                "",
            )
        )
        .with_panel(
            tile(
                "Event stream readers", "cc_events_subscribers", "short", steps((None, "blue")), ""
            )
        )
        .with_panel(
            graph(
                "CPU (cores) and memory",
                "short",
                query('rate(process_cpu_seconds_total{job="ccorch"}[$__rate_interval])', "CPU"),
                query('process_resident_memory_bytes{job="ccorch"} / 2^30', "RSS GiB"),
            )
        )
        .with_panel(
            graph(
                "HTTP answer time, 99th percentile",
                "s",
                query(
                    "histogram_quantile(0.99, sum by (le) (rate("
                    "cc_http_request_duration_seconds_bucket[$__rate_interval])))",
                    "p99",
                ),
            )
        )
        .with_panel(
            graph(
                "Media engine: tick lateness p99 and legs",
                "short",
                query("cc_media_tick_lateness_p99_seconds * 1000", "tick lateness p99 (ms)"),
                query("cc_media_legs", "legs"),
                query("cc_media_rooms", "rooms"),
            )
        )
        .with_panel(
            graph(
                "Cases that went overdue (per hour)",
                "short",
                query("sum(increase(cc_case_overdue_alarms_total[1h]))", "overdue"),
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "wallboard": wallboard,
    "queue": queue_detail,
    "agents": agents,
    "sip-media": sip_media,
    "node": node_health,
}


def render() -> dict[str, str]:
    """File name -> the dashboard's JSON, as written."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {
        f"{name}.json": encoder.encode(make().build()) + "\n" for name, make in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [
            n
            for n, text in files.items()
            if not (OUT / n).exists() or (OUT / n).read_text() != text
        ]
        if stale:
            print(
                f"dashboards differ from dashboards/generate.py: {', '.join(stale)}",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
