"""Supervision's figures in a real Prometheus (Debian's) scraping a running node while SIPp
calls are answered and abandoned: the shipped config and rules pass promtool, every panel
of every dashboard file returns data, the service level of the recording rules equals the
one computed from the CDRs of the same calls, and a trunk that stops answering raises its
alert. The dashboards' JSON is what ``dashboards/generate.py`` writes."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import free_port
from tests.sipp import Uas, free_udp_port, wait_for
from tests.test_inbound import Center, _center
from tests.test_ivr import Phone

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "dashboards"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def one_operator_queues(service_level_seconds: int) -> str:
    """Queues: ``general``, served by 7003 alone (wrap-up 1 s), in service when answered
    within ``service_level_seconds``; ``tech``, whose operator 7001 is not logged in."""
    return f"""
[[queue]]
name = "general"
skills = "general"
wrap_up_seconds = 1
ring_seconds = 5
expected_handle_seconds = 10
service_level_seconds = {service_level_seconds}

[[queue]]
name = "tech"
skills = "tech"

[[agent]]
extension = "7003"
skills = {{ general = 5 }}
queues = ["general"]

[[agent]]
extension = "7001"
skills = {{ tech = 5 }}
queues = ["tech"]
"""


QUEUES = one_operator_queues(5)


def test_the_shipped_prometheus_config_and_rules_pass_promtool() -> None:
    prom = DASHBOARDS / "prometheus"
    for args in (
        ["check", "config", str(prom / "prometheus.yml")],
        ["check", "rules", str(prom / "rules" / "ccorch.rules.yml")],
    ):
        done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_files_are_what_the_generator_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(DASHBOARDS / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def _prometheus(node_port: int, cwd: Path) -> Iterator[str]:
    """Debian's Prometheus with the shipped rules, scraping the node every second."""
    shipped = (DASHBOARDS / "prometheus" / "prometheus.yml").read_text()
    config = (
        shipped.replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("127.0.0.1:8000", f"127.0.0.1:{node_port}")
        .replace("rules/ccorch.rules.yml", str(DASHBOARDS / "prometheus/rules/ccorch.rules.yml"))
    )
    assert "scrape_interval: 1s" in config and f":{node_port}" in config
    (cwd / "prometheus.yml").write_text(config)
    port = free_port()
    log = (cwd / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={cwd / 'prometheus.yml'}",
            f"--storage.tsdb.path={cwd / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _ready(base), 30), (cwd / "prometheus.log").read_text()[-2000:]
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _value(base: str, expr: str) -> float | None:
    got = _query(base, expr)
    return float(got[0]["value"][1]) if got else None


def _panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def _fill(expr: str) -> str:
    """The dashboard's variables as Grafana fills them: a queue, the rate interval."""
    return expr.replace("$queue", "general").replace("$__rate_interval", "1m")


def _calls(center: Center) -> None:
    """One operator (7003, 6 s calls) and four callers choosing the general queue: the
    first is answered at once (within 5 s), the second waits for the operator (over 5 s),
    the third gives up after about 8 s of waiting (abandoned), the fourth after about 2 s
    (a short abandon)."""
    phone_port = center.register("7003")
    assert wait_for(lambda: center.m().get('cc_agents{state="ready"}', 0) >= 1, 10)
    agent = Uas("agent_hangup.xml", port=phone_port, cwd=center.cwd, m=2, extra=["-d", "6000"])
    first, first_sipp = center.caller()
    callers = [(first, first_sipp)]
    threads: list[threading.Thread] = []
    try:
        first.listen(1.5)
        first.press("2")
        assert wait_for(lambda: center.m().get('cc_agents{state="busy"}', 0) == 1, 10)

        def waiting_caller(p: Phone, seconds: float) -> None:
            p.listen(1.0)
            p.press("2")
            p.listen(seconds)

        for scenario, hangup_ms, listen in (
            ("trunk_ivr_call.xml", None, 20.0),
            ("trunk_ivr_hangup.xml", 9500, 9.0),
            ("trunk_ivr_hangup.xml", 3500, 3.0),
        ):
            extra = ["-d", str(hangup_ms)] if hangup_ms else None
            phone, sipp = center.caller(scenario, extra)
            callers.append((phone, sipp))
            threads.append(threading.Thread(target=waiting_caller, args=(phone, listen)))
            threads[-1].start()
            time.sleep(0.3)  # they queue in this order
        first.listen(1.0)
        for t in threads:
            t.join(45)
        for _, sipp in callers:
            assert sipp.wait(40) == 0
        assert agent.wait().ok
    finally:
        for phone, sipp in callers:
            phone.sock.close()
            if sipp.poll() is None:
                sipp.kill()
                sipp.wait(10)


def _cdr_service_level(db: str, queue: str, threshold: float, short: float) -> float:
    """Service level from the CDRs: answered within the threshold over offered calls less
    short abandons."""
    with psycopg.connect(db) as conn:
        row = conn.execute(
            """SELECT count(*) FILTER (WHERE queue_outcome = 'answered'
                                       AND waited_ms <= %(t)s * 1000),
                      count(*) FILTER (WHERE NOT (queue_outcome = 'abandoned'
                                                  AND waited_ms < %(s)s * 1000))
                 FROM cdrs WHERE queue = %(q)s AND queue_outcome IS NOT NULL""",
            {"q": queue, "t": threshold, "s": short},
        ).fetchone()
    assert row is not None and row[1] > 0
    return float(row[0]) / float(row[1])


@pytest.mark.slow
def test_prometheus_scrapes_the_node_and_every_panel_and_rule_has_data(
    pg_admin_url: str, tmp_path: Path
) -> None:
    dead = free_udp_port()  # a trunk nobody answers: its OPTIONS probes time out
    probe = f'[[trunk]]\nname = "probe"\nhost = "127.0.0.1"\nport = {dead}\noptions_interval = 1\n'
    with (
        _center(pg_admin_url, tmp_path, queues=QUEUES, trunks=probe) as center,
        _prometheus(center.node.port, tmp_path) as prom,
    ):
        # counters count from Prometheus's first scrape: calls start after it
        assert wait_for(lambda: _value(prom, 'up{job="ccorch"}') == 1, 20)
        _calls(center)
        with psycopg.connect(center.db) as conn:
            assert wait_for(
                lambda: (
                    conn.execute("SELECT count(*) FROM cdrs WHERE queue = 'general'").fetchone()[0]  # type: ignore[index]
                    == 4
                ),
                15,
            )
        m = center.m()
        got = {
            o: m[f'cc_queue_calls_total{{outcome="{o}",queue="general"}}']
            for o in ("answered", "abandoned", "abandoned_short")
        }
        assert got == {"answered": 2, "abandoned": 1, "abandoned_short": 1}, got
        assert m['cc_queue_calls_answered_in_threshold_total{queue="general"}'] == 1

        # a live scrape passes promtool's lint
        with urllib.request.urlopen(center.node.base + "/metrics", timeout=10) as r:
            scrape = r.read()
        lint = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=scrape, capture_output=True, check=False
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
        # no caller numbers, call ids or operators as labels
        labels = set(re.findall(rb"[{,]([a-z_]+)=", scrape))
        assert not labels & {b"ani", b"call", b"call_id", b"agent", b"extension"}, labels

        # the rules' service level is the CDRs': 1 of 3 (the short abandon left out)
        expected = _cdr_service_level(center.db, "general", threshold=5, short=5)
        assert expected == pytest.approx(1 / 3)
        today = 'cc_queue:service_level:today{queue="general"}'
        assert wait_for(lambda: _value(prom, today) == pytest.approx(expected), 15), _query(
            prom, today
        )
        # over 15 minutes: the same (both counters extrapolate alike over one window)
        assert _value(prom, 'cc_queue:service_level:15m{queue="general"}') == pytest.approx(
            expected, rel=1e-6
        )
        assert _value(prom, 'cc_queue:abandon_rate:today{queue="general"}') == pytest.approx(1 / 3)
        aht = _value(prom, 'cc_queue:aht_seconds:today{queue="general"}')
        assert aht is not None and 6 <= aht <= 9, aht  # 6 s talk, about 1 s wrap-up

        # every panel of every dashboard, its variables filled, returns data
        assert _query(prom, 'count(cc_queue_calls_waiting{queue="general"})')
        empty: list[str] = []
        files = sorted((DASHBOARDS / "grafana" / "dashboards").glob("*.json"))
        assert len(files) == 5
        for f in files:
            board = json.loads(f.read_text())
            for var in board["templating"]["list"]:
                if var["type"] == "query":
                    metric = re.match(r"label_values\((\w+), (\w+)\)", var["query"])
                    assert metric is not None, var["query"]
                    assert _query(prom, f"count by ({metric[2]}) ({metric[1]})"), var
            for title, expr in _panel_queries(board):
                if not _query(prom, _fill(expr)):
                    empty.append(f"{f.name}: {title}: {expr}")
        assert not empty, "panels without data:\n" + "\n".join(empty)

        # the trunk that does not answer raises its alarm
        def trunk_alert() -> bool:
            with urllib.request.urlopen(prom + "/api/v1/alerts", timeout=5) as r:
                alerts = json.loads(r.read())["data"]["alerts"]
            return any(
                a["labels"]["alertname"] == "CcTrunkDown"
                and a["labels"].get("trunk") == "probe"
                and a["state"] == "firing"
                for a in alerts
            )

        assert wait_for(trunk_alert, 20)
