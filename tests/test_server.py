"""`ccorch serve` as a user runs it: health, metrics, JSON errors and logs, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Node, start_node

pytestmark = pytest.mark.slow


def get(url: str, timeout: float = 10) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), {k.lower(): v for k, v in e.headers.items()}


def stop(node: Node, timeout: float = 30) -> int:
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGTERM)
    return node.proc.wait(timeout=timeout)


def test_health_metrics_json_errors_and_json_logs(
    fresh_db: str, tmp_path: Path, nodes: list[Node]
) -> None:
    node = start_node(tmp_path, {"DATABASE_URL": fresh_db})
    nodes.append(node)
    try:
        status, body, _ = get(node.base + "/healthz")
        assert status == 200
        health = json.loads(body)
        assert health["database"] == "up" and health["schema_version"] >= 1

        status, body, _ = get(node.base + "/no/such/thing")
        assert status == 404
        assert json.loads(body)["error"] == "not_found"

        status, body, headers = get(node.base + "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        # this request and the test harness's readiness probe
        assert 'cc_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in body
        assert 'route="unmatched",status="404"' in body  # raw paths never become labels
        assert "cc_database_up 1.0" in body
        assert "process_resident_memory_bytes" in body
        assert 'cc_build_info{version="' in body
        # The media engine runs inside the node and reports its clock.
        assert "cc_media_legs 0.0" in body
        assert "cc_media_tick_lateness_p99_seconds" in body
    finally:
        assert stop(node) == 0
    lines = node.log_lines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    msgs = [r["msg"] for r in records]
    assert "ccorch starting" in msgs and "ccorch stopped" in msgs
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)


def _wait_for(predicate: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return False
    except OSError:
        return True


def _health_query_waiting_on_lock(admin: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%schema_migrations%'"
    ).fetchone()
    return bool(row and row[0])


def test_sigterm_finishes_the_request_in_flight_and_refuses_new_ones(
    fresh_db: str, tmp_path: Path, nodes: list[Node]
) -> None:
    node = start_node(tmp_path, {"DATABASE_URL": fresh_db})
    nodes.append(node)
    result: dict[str, object] = {}
    with psycopg.connect(fresh_db) as blocker, psycopg.connect(fresh_db, autocommit=True) as admin:
        # Hold a lock the health check needs, so its request stays in flight.
        blocker.execute("LOCK TABLE ccorch_schema_migrations IN ACCESS EXCLUSIVE MODE")

        def request() -> None:
            result["status"], result["body"], _ = get(node.base + "/healthz", timeout=30)

        t = threading.Thread(target=request)
        t.start()
        _wait_for(lambda: _health_query_waiting_on_lock(admin))
        node.proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: _refuses_connections(node.port))  # no new work accepted
        assert node.proc.poll() is None  # ...but still running for the request in flight
        blocker.rollback()  # the database answers; the request can finish
        t.join(timeout=30)
    assert result["status"] == 200
    assert json.loads(str(result["body"]))["database"] == "up"
    assert node.proc.wait(timeout=30) == 0


def test_shutdown_deadline_bounds_a_stuck_request(
    fresh_db: str, tmp_path: Path, nodes: list[Node]
) -> None:
    node = start_node(
        tmp_path, {"DATABASE_URL": fresh_db, "CCORCH_SERVER_SHUTDOWN_GRACE_SECONDS": "1"}
    )
    nodes.append(node)
    with psycopg.connect(fresh_db) as blocker, psycopg.connect(fresh_db, autocommit=True) as admin:
        blocker.execute("LOCK TABLE ccorch_schema_migrations IN ACCESS EXCLUSIVE MODE")
        outcome: list[object] = []

        def request() -> None:
            try:
                outcome.append(get(node.base + "/healthz", timeout=30)[0])
            except OSError as e:  # the server closed the connection at its deadline
                outcome.append(e)

        t = threading.Thread(target=request)
        t.start()
        _wait_for(lambda: _health_query_waiting_on_lock(admin))
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        code = node.proc.wait(timeout=30)
        waited = time.monotonic() - started
        blocker.rollback()
        t.join(timeout=30)
    assert code == 0
    assert outcome and outcome[0] != 200, "a request cut off at the deadline must not look answered"
    # The stuck request was given its grace second and not much more (pool close included).
    assert waited < 15


def test_bad_configuration_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ccorch", "serve"],
        cwd=tmp_path,
        env={"CCORCH_HTTP_PORT": "99999", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert (
        "http.port = '99999' (from environment CCORCH_HTTP_PORT): expected an integer from 1 to 65535"
        in proc.stderr
    )


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ccorch", "migrate"],
        cwd=tmp_path,
        env={
            "DATABASE_URL": f"postgresql://nobody@/x?host={tmp_path}/no-socket-here",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot connect to the database" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ccorch", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ccorch 0.1.0 (core 0.1.0)")


def _serve_once(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccorch", "serve"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_node_on_taken_ports_says_which_in_one_line_before_starting_anything(
    tmp_path: Path, fresh_db: str, nodes: list[Node]
) -> None:
    first = start_node(tmp_path, {"DATABASE_URL": fresh_db})
    nodes.append(first)
    sip_port = next(
        line.split('"sip": "127.0.0.1:')[1].split('"')[0]
        for line in _wait_log(first, '"sip listening"')
    )
    second = tmp_path / "second"
    second.mkdir()
    data_dir = second / "pgdata"
    env = {"CCORCH_DATABASE_DATA_DIR": str(data_dir), "CCORCH_SIP_PORT": sip_port}
    # the first node's HTTP port
    proc = _serve_once(second, {**env, "CCORCH_HTTP_PORT": str(first.port)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert f"127.0.0.1:{first.port} (TCP) is not free" in proc.stderr
    assert "set http.port (or CCORCH_HTTP_PORT)" in proc.stderr
    # a free HTTP port, the first node's SIP port
    proc = _serve_once(second, env)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"127.0.0.1:{sip_port} (UDP) is not free" in proc.stderr
    assert "set sip.port (or CCORCH_SIP_PORT)" in proc.stderr
    # every RTP pair of the media range taken
    held, lo = _hold_rtp_pairs(2)
    try:
        proc = _serve_once(
            second,
            {
                "CCORCH_DATABASE_DATA_DIR": str(data_dir),
                "CCORCH_SIP_PORT": str(_free_port()),
                "CCORCH_MEDIA_PORT_MIN": str(lo),
                "CCORCH_MEDIA_PORT_MAX": str(lo + 4),
            },
        )
    finally:
        for s in held:
            s.close()
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "every RTP port pair of the range is in use" in proc.stderr
    assert "set media.port_min" in proc.stderr
    assert not data_dir.exists()  # no database was started for any of them
    assert first.proc.poll() is None  # and the first node serves on


def _hold_rtp_pairs(pairs: int) -> tuple[list[socket.socket], int]:
    """UDP sockets on the even (RTP) ports of ``pairs`` pairs in a row; the first port."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            lo = probe.getsockname()[1] & ~1
        held: list[socket.socket] = []
        try:
            for i in range(pairs):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", lo + 2 * i))
            return held, lo
        except OSError:
            for s in held:
                s.close()


def _free_port() -> int:
    from tests.conftest import free_port

    return free_port()


def _wait_log(node: Node, needle: str, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in node.log_lines() if needle in line]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{needle} not in the node's log")


def test_https_with_a_configured_certificate_and_security_headers_on_every_answer(
    tmp_path: Path, fresh_db: str, nodes: list[Node]
) -> None:
    import ssl

    from tests.certs import make_ca, make_leaf

    ca = make_ca(tmp_path / "pki")
    leaf = make_leaf(tmp_path / "pki", "node")
    plain = start_node(tmp_path, {"DATABASE_URL": fresh_db})
    nodes.append(plain)
    status, _, headers = get(plain.base + "/healthz")
    assert status == 200
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in headers  # plain HTTP (e.g. behind a proxy)
    stop(plain)

    secure = start_node(
        tmp_path,
        {
            "DATABASE_URL": fresh_db,
            "CCORCH_HTTP_TLS_CERT": str(leaf.cert),
            "CCORCH_HTTP_TLS_KEY": str(leaf.key),
        },
    )
    nodes.append(secure)
    trust = ssl.create_default_context(cafile=str(ca))
    url = f"https://127.0.0.1:{secure.port}/healthz"
    with urllib.request.urlopen(url, timeout=10, context=trust) as r:
        assert r.status == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")
        assert "default-src 'self'" in r.headers["content-security-policy"]
    import http.client

    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{secure.port}/healthz", timeout=5)
    stop(secure)

    # half a pair, or a wrong file, is one line naming the key
    proc = _serve_once(tmp_path, {"CCORCH_HTTP_TLS_CERT": str(leaf.cert)})
    assert proc.returncode == 2 and "http.tls_key" in proc.stderr, proc.stderr
    proc = _serve_once(
        tmp_path, {"CCORCH_HTTP_TLS_CERT": str(leaf.key), "CCORCH_HTTP_TLS_KEY": str(leaf.key)}
    )
    assert proc.returncode == 2 and "http.tls_cert" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("delay", [0.0, 0.15])
def test_a_sigterm_while_the_node_starts_stops_it_cleanly_once_it_serves(
    fresh_db: str, tmp_path: Path, delay: float
) -> None:
    """SIGTERM as soon as the HTTP port takes connections (the start-up listeners still
    running) or a little later: remembered and acted on once the node serves, exit 0 with
    the shutdown run. Before, Sanic's handler either was not installed yet (killed, -15),
    cut the start-up listeners (exit 1), or had its stop swallowed (served forever)."""
    port, sip = _free_port(), _free_port()
    log_path = tmp_path / "node.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCORCH_")}
    env |= {"DATABASE_URL": fresh_db, "CCORCH_SIP_PORT": str(sip)}
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ccorch", "serve", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    try:
        _wait_for(lambda: not _refuses_connections(port), timeout=60)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "Worker complete" in log_path.read_text()
