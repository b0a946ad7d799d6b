"""B2BUA calls per second: ccorch against Kamailio (stateful proxy), same SIPp scenario, one run.

    scripts/setup.sh release                  # the optimized extension
    apt-get install kamailio                  # the reference peer (Debian)
    .venv/bin/python benches/sip_load.py --rates 200,400,600,800,1000 --seconds 10

Per rate step: a SIPp agent phone (``agent_answer.xml``, answers at once) and a SIPp trunk
(``trunk_call.xml``: INVITE → 100/180/200 → ACK → BYE → 200, no pause, no media sent) run
pinned to core 0; the system under test is pinned to core 1 (whole process tree). Measured
per step: calls placed and failed, SIP retransmissions seen by the trunk (a lost or late
message shows up there first), the server's CPU (utime+stime of every thread of the process
tree over the step's wall time, % of one core), and for ccorch the lost-ACK counter from its
/metrics. ccorch does more per call than the proxy: two dialogs, SDP offer/answer, two RTP
legs allocated in the media engine and bridged, call events. Loopback only; every step is
bounded by --seconds plus a drain timeout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SCEN = REPO / "sip" / "sipp"
TICKS = os.sysconf("SC_CLK_TCK")
PIN_SUT = ["taskset", "-c", "1"]
PIN_LOAD = ["taskset", "-c", "0"]


class Ports:
    """The bench's own ports, handed out in order from a range given on the command line
    (the kernel's ephemeral range overlaps the node's RTP range, and a SIPp bound there
    could take a port the media engine hands out a moment later)."""

    def __init__(self, span: str) -> None:
        low, high = parse_range(span, "--bench-ports")
        self._next, self._high = low, high

    def take(self) -> int:
        import socket

        while self._next <= self._high:
            port, self._next = self._next, self._next + 1
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
                try:
                    u.bind(("127.0.0.1", port))
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise SystemExit("--bench-ports: the range is used up; give a wider one")


def parse_range(span: str, option: str) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in span.split("-"))
    except ValueError:
        raise SystemExit(f"{option}: expected LOW-HIGH, got {span!r}") from None
    if not 1024 <= low <= high <= 65535:
        raise SystemExit(f"{option}: {span} is not a range of ports between 1024 and 65535")
    return low, high


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def postmaster_pid(work: Path) -> int | None:
    """The embedded PostgreSQL's postmaster: pg_ctl starts it detached, outside the node's
    process tree, so its CPU (and its backends') is measured apart."""
    try:
        return int((work / "var" / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of a process and its descendants (Sanic or Kamailio workers)."""
    total = 0.0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        pids += [int(c) for c in children]
    return total


def tree_rss_kib(pid: int) -> int:
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            pids += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except FileNotFoundError:
            continue
    return total


def metric(base: str, name: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:  # noqa: S310 - our own http://127.0.0.1
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def wait_port(port: int, timeout: float = 90) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


def start_ccorch(
    work: Path,
    sip_port: int,
    trunk_port: int,
    http: int,
    media: tuple[int, int],
    pool_min: int | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    (work / "trunks.toml").write_text(
        f'[[trunk]]\nname = "load"\nhost = "127.0.0.1"\nport = {trunk_port}\n'
        'match = "host+port"\noptions_interval = 0\n'
    )
    (work / "ccorch.toml").write_text(
        f'[sip]\nport = {sip_port}\ntrunks_file = "{work / "trunks.toml"}"\n'
        'auth_algorithms = "MD5,SHA-256"\n[log]\nlevel = "warning"\n'
        f"[media]\nport_min = {media[0]}\nport_max = {media[1]}\n"
        + (
            f"[database]\npool_min = {pool_min}\npool_max = {max(pool_min, 10)}\n"
            if pool_min
            else ""
        )
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CCORCH_") and k != "DATABASE_URL"
    }
    log = (work / "ccorch.log").open("wb")
    proc = subprocess.Popen(
        [*PIN_SUT, sys.executable, "-m", "ccorch", "serve", "--port", str(http)],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    wait_port(http)
    return proc, f"http://127.0.0.1:{http}"


def start_kamailio(work: Path, port: int, agent_port: int) -> subprocess.Popen[bytes]:
    cfg = (REPO / "sip" / "kamailio" / "bench-proxy.cfg.in").read_text()
    cfg = cfg.replace("@AGENT_PORT@", str(agent_port)).replace("@LISTEN@", f"127.0.0.1:{port}")
    (work / "kamailio.cfg").write_text(cfg)
    proc = subprocess.Popen(
        [
            *PIN_SUT,
            "kamailio",
            "-f",
            str(work / "kamailio.cfg"),
            "-DD",
            "-E",
            "-m",
            "256",
            "-M",
            "16",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "kamailio.log").open("wb"),
    )
    time.sleep(1.5)
    return proc


def sipp(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*PIN_LOAD, "sipp", "-nostdin", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for a SIPp to end by itself; past the timeout, kill it. Whether it ended."""
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def step(
    name: str,
    pid: int,
    target: str,
    rate: int,
    seconds: float,
    work: Path,
    agent_port: int,
    trunk_port: int,
    base: str | None,
    ports: Ports,
    database_pid: int | None,
) -> dict[str, float]:
    count = int(rate * seconds)
    stats = work / f"{name}-{rate}.csv"
    uas = sipp(
        [
            "-sf",
            str(SCEN / "agent_answer.xml"),
            "-d",
            "0",
            "-p",
            str(agent_port),
            "-m",
            str(count),
            "-mp",
            str(ports.take()),
            "-timeout",
            f"{int(seconds + 60)}s",
        ],
        work,
    )
    time.sleep(0.5)
    lost_acks0 = metric(base, "cc_sip_ack_timeouts_total") if base else 0.0
    db0 = tree_cpu_seconds(database_pid) if database_pid else 0.0
    cpu0, t0 = tree_cpu_seconds(pid), time.monotonic()
    uac = sipp(
        [
            "-sf",
            str(SCEN / "trunk_call.xml"),
            "-s",
            "7001",
            "-d",
            "0",
            "-r",
            str(rate),
            "-m",
            str(count),
            "-p",
            str(trunk_port),
            "-mp",
            str(ports.take()),
            "-l",
            str(max(200, rate * 2)),
            "-trace_stat",
            "-stf",
            str(stats),
            "-fd",
            "1",
            "-timeout",
            f"{int(seconds + 60)}s",
            "-trace_err",
            "-error_file",
            str(work / f"{name}-{rate}-trunk-errors.log"),
            target,
        ],
        work,
    )
    # SIPp's own -timeout ends it; this bound is for a SIPp that hangs all the same
    uac_ended = finish(uac, seconds + 90)
    cpu1, t1 = tree_cpu_seconds(pid), time.monotonic()
    db1 = tree_cpu_seconds(database_pid) if database_pid else 0.0
    uas_ended = finish(uas, 20)
    rows = list(csv.DictReader(stats.open(), delimiter=";")) if stats.exists() else []
    last = rows[-1] if rows else {}
    ok = float(last.get("SuccessfulCall(C)", 0) or 0)
    failed = float(last.get("FailedCall(C)", 0) or 0)
    retrans = float(last.get("Retransmissions(C)", 0) or 0)
    wall = t1 - t0
    out = {
        "rate": rate,
        "calls": ok + failed,
        "failed": failed,
        "retransmissions": retrans,
        "achieved_cps": round((ok + failed) / wall, 1),
        "cpu_percent": round(100 * (cpu1 - cpu0) / wall, 1),
        "rss_mib": round(tree_rss_kib(pid) / 1024, 1),
        "sipp_killed": int(not uac_ended) + int(not uas_ended),
    }
    if database_pid:
        out["database_cpu_percent"] = round(100 * (db1 - db0) / wall, 1)
    if ok + failed:
        out["cpu_ms_per_call"] = round(1000 * (cpu1 - cpu0) / (ok + failed), 3)
        if database_pid:
            out["cpu_ms_per_call_with_database"] = round(
                1000 * (cpu1 - cpu0 + db1 - db0) / (ok + failed), 3
            )
    if base:
        time.sleep(0.5)
        out["lost_acks"] = metric(base, "cc_sip_ack_timeouts_total") - lost_acks0
        out["calls_active_after"] = metric(base, "cc_calls_active")
        out["overload_rejects_total"] = metric(base, "cc_sip_overload_rejects_total")
    return out


def register(target: str, agent_port: int, work: Path, ports: Ports) -> None:
    r = subprocess.run(
        [
            "sipp",
            "-nostdin",
            "-sf",
            str(SCEN / "agent_register.xml"),
            "-s",
            "7001",
            "-au",
            "7001",
            "-ap",
            "agent7001",
            "-key",
            "contact_port",
            str(agent_port),
            "-key",
            "expires",
            "3600",
            "-m",
            "1",
            "-p",
            str(ports.take()),
            "-timeout",
            "10s",
            target,
        ],
        cwd=work,
        capture_output=True,
    )
    if r.returncode != 0:
        raise SystemExit("agent registration failed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="200,400,600,800,1000")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--systems", default="ccorch,kamailio")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path, help="keep logs and SIPp statistics here")
    ap.add_argument("--settle", type=float, default=35, help="seconds idle before the last RSS")
    ap.add_argument("--media-ports", default="20000-29999", help="the node's RTP range (LOW-HIGH)")
    ap.add_argument(
        "--pool-min",
        type=int,
        help="the node's database.pool_min (default: the node's own, 1): connections opened at start",
    )
    ap.add_argument(
        "--bench-ports",
        default="40000-44999",
        help="SIP, HTTP and SIPp media ports of the bench and its peers (LOW-HIGH)",
    )
    a = ap.parse_args()
    media = parse_range(a.media_ports, "--media-ports")
    ports = Ports(a.bench_ports)
    if overlaps(media, parse_range(a.bench_ports, "--bench-ports")):
        raise SystemExit("--media-ports and --bench-ports overlap")
    rates = [int(r) for r in a.rates.split(",")]
    results: dict[str, list[dict[str, float]]] = {}
    memory: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = a.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for system in a.systems.split(","):
            sip_port, trunk_port, agent_port = ports.take(), ports.take(), ports.take()
            target = f"127.0.0.1:{sip_port}"
            base = None
            database_pid = None
            if system == "ccorch":
                proc, base = start_ccorch(
                    work, sip_port, trunk_port, ports.take(), media, a.pool_min
                )
                register(target, agent_port, work, ports)
                database_pid = postmaster_pid(work)
                idle_rss = round(tree_rss_kib(proc.pid) / 1024, 1)
                print(system, json.dumps({"idle_rss_mib": idle_rss}), flush=True)
            else:
                proc = start_kamailio(work, sip_port, agent_port)
            results[system] = []
            try:
                for rate in rates:
                    r = step(
                        system,
                        proc.pid,
                        target,
                        rate,
                        a.seconds,
                        work,
                        agent_port,
                        trunk_port,
                        base,
                        ports,
                        database_pid,
                    )
                    results[system].append(r)
                    print(system, json.dumps(r), flush=True)
                    time.sleep(2)
                if system == "ccorch":
                    # memory once the load is over: back to idle, or held
                    time.sleep(a.settle)
                    settled = {
                        "idle_rss_mib": idle_rss,
                        "settled_rss_mib": tree_rss_kib(proc.pid) / 1024,
                    }
                    print(system, json.dumps(settled), flush=True)
                    memory[system] = settled
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
    if a.json:
        a.json.write_text(json.dumps({"steps": results, "memory": memory}, indent=2))
    print("\nrate  " + "  ".join(f"{s:>36}" for s in results))
    for i, rate in enumerate(rates):
        cells = []
        for s in results:
            r = results[s][i]
            cells.append(
                f"{r['achieved_cps']:>7} cps {r['failed']:>4.0f} fail {r['retransmissions']:>5.0f} rtx {r['cpu_percent']:>5}% cpu"
                + (f" +{r['database_cpu_percent']}% db" if "database_cpu_percent" in r else "")
            )
        print(f"{rate:>5} " + "  ".join(cells))


if __name__ == "__main__":
    main()
