"""Concurrent inbound calls end to end: trunk → IVR → ACD queue → operator, with media and
recording, on one node.

    scripts/setup.sh release
    .venv/bin/python benches/inbound_load.py --calls 200 --cps 50

What runs (all on loopback, all real parts):
- PostgreSQL (embedded, or ``DATABASE_URL``) with ``--calls`` operator accounts 8000…, each
  with a persisted registration whose Contact is one SIPp phone (``agent_answer.xml`` with
  ``-rtp_echo``: it answers every offer and echoes the audio it gets);
- the node (``ccorch serve``), its flow ``load`` on DNIS 150: "Welcome to the load test."
  (TTS), then the queue ``load`` that every operator serves; every answered call is recorded
  (stereo WAV, caller left, operator right);
- SIPp as the carrier (``trunk_load_call.xml``): ``--calls`` calls at ``--cps``, each
  speaking (PCMU at 50 packets/s, ``rtp_stream``) until it hangs up, so that all calls are up
  at once for ``--plateau`` seconds.

Measured: failed calls (SIPp's count), peak calls in progress (the node's
``cc_calls_active``), the node's CPU over the plateau (process tree, % of one core) and its
peak resident memory (the node alone; the database is reported apart), the engine's tick
lateness, RTP loss and the E-model MOS of every leg when it ends (``cc_media_leg_mos``),
and how many recordings were written. Bounded: calls and time are fixed by the arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benches.sip_load import tree_cpu_seconds, tree_rss_kib, wait_port  # noqa: E402
from tests.sipp import free_udp_port  # noqa: E402

SCEN = REPO / "sip" / "sipp"
FIRST_AGENT = 8000


def metrics(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:  # noqa: S310 - loopback
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
    return out


def udp_receive_errors() -> int:
    """The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)."""
    lines = Path("/proc/net/snmp").read_text().splitlines()
    heads, values = [x.split() for x in lines if x.startswith("Udp:")][:2]
    return int(values[heads.index("RcvbufErrors")])


def load_trunk(work: Path) -> tuple[int, int, int]:
    """The carrier's trunk of a load run in ``work/trunks.toml``: (the node's SIP port, the
    carrier's, the operators' phones'), all free."""
    sip_port, trunk_port, phone_port = free_udp_port(), free_udp_port(), free_udp_port()
    (work / "trunks.toml").write_text(
        f'[[trunk]]\nname = "load"\nhost = "127.0.0.1"\nport = {trunk_port}\n'
        'match = "host+port"\noptions_interval = 0\n'
    )
    return sip_port, trunk_port, phone_port


def database(work: Path) -> tuple[str, Any]:
    """``DATABASE_URL``, else an embedded PostgreSQL in ``work`` (returned to be stopped)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url, None
    from ccorch.db.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(work / "pgdata")
    return server.start(), server


def serve(work: Path, db_url: str, ready: int) -> tuple[subprocess.Popen[bytes], str]:
    """``ccorch serve`` in ``work`` (its ccorch.toml) on a free HTTP port, returned once
    ``ready`` operators are Ready: the process and its base URL."""
    http = free_udp_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCORCH_")}
    env |= {"DATABASE_URL": db_url, "CCORCH_CRM_ADMIN_PASSWORD": "bench-admin-password"}
    node = subprocess.Popen(
        [sys.executable, "-m", "ccorch", "serve", "--port", str(http)],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(work / "ccorch.log").open("wb"),
    )
    wait_port(http)
    base = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 60
    while metrics(base).get('cc_agents{state="ready"}', 0) < ready:
        if time.monotonic() > deadline:
            node.kill()
            raise SystemExit(f"operators not ready: {metrics(base)}")
        time.sleep(0.5)
    return node, base


def voice_file(path: Path) -> Path:
    """Ten seconds of a voice-like signal as raw PCMU (what ``rtp_stream`` plays)."""
    from ccorch._core import g711_encode

    pcm = b"".join(
        struct.pack(
            "<h",
            int(
                4000 * math.sin(2 * math.pi * 220 * i / 8000)
                + 2000 * math.sin(2 * math.pi * 330 * i / 8000) * (1 + math.sin(i / 4000))
            ),
        )
        for i in range(8000 * 10)
    )
    path.write_bytes(g711_encode(pcm, "PCMU"))
    return path


async def prepare_db(url: str, agents: int, contact_ports: list[int], realm: str) -> None:
    import psycopg

    from ccorch.db.migrate import migrate
    from ccorch.sip.registrar import create_account

    await migrate(url)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for i in range(agents):
            user = str(FIRST_AGENT + i)
            contact_port = contact_ports[i % len(contact_ports)]
            await create_account(conn, user, f"load{user}", realm, f"Load {user}")
            await conn.execute(
                """INSERT INTO sip_registrations (username, contact, expires_at, call_id, cseq,
                                                  source, user_agent)
                   VALUES (%s, %s, now() + interval '1 hour', %s, 1, %s, 'SIPp load phone')
                   ON CONFLICT (username, contact) DO UPDATE SET expires_at = excluded.expires_at""",
                (
                    user,
                    f"sip:{user}@127.0.0.1:{contact_port}",
                    f"load-{user}",
                    f"udp:127.0.0.1:{contact_port}",
                ),
            )
        await conn.commit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200, help="calls, all up at once")
    ap.add_argument("--cps", type=float, default=50)
    ap.add_argument("--plateau", type=float, default=20, help="seconds with every call up")
    ap.add_argument("--shards", type=int, default=2, help="media threads")
    ap.add_argument(
        "--phone-processes",
        type=int,
        default=4,
        help="SIPp processes sharing the operators' phones (one echoing every operator's "
        "audio through one socket cannot keep up past ~300 calls)",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path, help="keep logs, recordings and statistics here")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccorch-inbound-"))
    work.mkdir(parents=True, exist_ok=True)
    n = args.calls
    flows = work / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "load.yaml").write_text(
        'flow: load\ndnis: ["150"]\nlanguage: en\nstart: hello\nnodes:\n'
        '  hello:\n    type: say\n    text: "Welcome to the load test."\n    next: wait\n'
        "  wait:\n    type: queue\n    queue: load\n"
    )
    queues = ['[[queue]]\nname = "load"\nskills = "load"\nwrap_up_seconds = 1\nring_seconds = 20\n']
    for i in range(n):
        queues.append(
            f'[[agent]]\nextension = "{FIRST_AGENT + i}"\nskills = {{ load = 1 }}\nqueues = ["load"]\n'
        )
    (flows / "queues.toml").write_text("\n".join(queues))
    sip_port, trunk_port, phone_port = load_trunk(work)
    (work / "ccorch.toml").write_text(
        f'[sip]\nport = {sip_port}\ntrunks_file = "{work / "trunks.toml"}"\n'
        "rate_limit = 100000\nrate_burst = 100000\n"
        '[log]\nlevel = "warning"\n'
        f'[media]\nport_min = 20000\nport_max = 29999\nshards = {args.shards}\nrecordings_dir = "{work / "rec"}"\n'
        f'[ivr]\nflows_dir = "{flows}"\ntts_cache_dir = "{work / "tts"}"\n'
        "[database]\npool_max = 20\n"
    )
    db_url, server = database(work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        phone_ports = [phone_port] + [free_udp_port() for _ in range(args.phone_processes - 1)]
        asyncio.run(prepare_db(db_url, n, phone_ports, "ccorch"))
        node, base = serve(work, db_url, n)
        procs.append(node)
        phones = [
            subprocess.Popen(
                [
                    "sipp",
                    "-sf",
                    str(SCEN / "agent_answer.xml"),
                    "-d",
                    "100",
                    "-p",
                    str(port),
                    "-mp",
                    str(free_udp_port()),
                    "-rtp_echo",
                    "-m",
                    str(n),
                    "-nostdin",
                    "-timeout",
                    f"{int(n / args.cps + args.plateau + 120)}s",
                    "-trace_err",
                    "-error_file",
                    str(work / f"phones-{port}-errors.log"),
                ],
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for port in phone_ports
        ]
        procs.extend(phones)
        time.sleep(0.5)
        ramp = n / args.cps
        # Each caller hangs up so long after the IVR answered: the ramp, the greeting and
        # the ring (~5 s with margin) and the plateau.
        hold_ms = int((ramp + 5 + args.plateau) * 1000)
        stats = work / "callers.csv"
        voice_file(work / "load-voice.ulaw")  # what the callers say (the scenario names it)
        rss_peak = tree_rss_kib(node.pid)
        callers = subprocess.Popen(
            [
                "sipp",
                "-sf",
                str(SCEN / "trunk_load_call.xml"),
                "-s",
                "150",
                "-d",
                str(hold_ms),
                "-r",
                str(args.cps),
                "-m",
                str(n),
                "-l",
                str(n),
                "-p",
                str(trunk_port),
                "-mp",
                str(free_udp_port()),
                "-nostdin",
                "-trace_stat",
                "-stf",
                str(stats),
                "-fd",
                "1",
                "-trace_err",
                "-error_file",
                str(work / "callers-errors.log"),
                "-timeout",
                f"{int(ramp + args.plateau + 120)}s",
                f"127.0.0.1:{sip_port}",
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(callers)
        # Ramp: wait until every call is up (or the ramp plus 15 s has passed).
        t_start = time.monotonic()
        active_peak = 0.0
        while time.monotonic() < t_start + ramp + 15:
            m = metrics(base)
            active_peak = max(active_peak, m.get("cc_calls_active", 0))
            rss_peak = max(rss_peak, tree_rss_kib(node.pid))
            talking = m.get('cc_agents{state="busy"}', 0)
            print(
                f"ramp {time.monotonic() - t_start:5.1f} s: {m.get('cc_calls_active', 0):.0f}"
                f" calls, {talking:.0f} operators talking",
                file=sys.stderr,
            )
            if talking >= n:
                break
            time.sleep(0.5)
        # Plateau: every call talking to its operator; CPU and memory over this window.
        window = args.plateau - 1
        m0 = metrics(base)
        cpu0, t0 = tree_cpu_seconds(node.pid), time.monotonic()
        load0 = tree_cpu_seconds(callers.pid) + sum(tree_cpu_seconds(p.pid) for p in phones)
        drops0 = udp_receive_errors()
        busy_min = m0.get('cc_agents{state="busy"}', 0)
        while time.monotonic() < t0 + window:
            time.sleep(1.0)
            m = metrics(base)
            busy_min = min(busy_min, m.get('cc_agents{state="busy"}', 0))
            active_peak = max(active_peak, m.get("cc_calls_active", 0))
            rss_peak = max(rss_peak, tree_rss_kib(node.pid))
        cpu1, t1 = tree_cpu_seconds(node.pid), time.monotonic()
        load1 = tree_cpu_seconds(callers.pid) + sum(tree_cpu_seconds(p.pid) for p in phones)
        drops1 = udp_receive_errors()
        callers.wait(ramp + args.plateau + 150)
        time.sleep(3.0)  # the last CDRs and recordings
        m1 = metrics(base)
        rows = list(csv.DictReader(stats.open(), delimiter=";")) if stats.exists() else []
        last = rows[-1] if rows else {}
        measured = m1.get("cc_media_leg_mos_count", 0)
        recordings = list((work / "rec").rglob("*.wav"))
        pg_rss = 0
        if server is not None and server.pid is not None:
            pg_rss = tree_rss_kib(server.pid)
        out = {
            "calls": n,
            "phone_processes": len(phones),
            "cps": args.cps,
            "successful": float(last.get("SuccessfulCall(C)", 0) or 0),
            "failed": float(last.get("FailedCall(C)", 0) or 0),
            "peak_calls_in_progress": active_peak,
            "answered_by_operator": m1.get(
                'cc_queue_calls_total{outcome="answered",queue="load"}', 0
            ),
            "abandoned_in_queue": m1.get(
                'cc_queue_calls_total{outcome="abandoned",queue="load"}', 0
            ),
            "operators_talking_min_on_plateau": busy_min,
            "plateau_seconds": round(t1 - t0, 1),
            "ramp_seconds": round(t0 - t_start, 1),
            "node_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "node_rss_peak_mib": round(rss_peak / 1024, 1),
            "sipp_cpu_percent_of_one_core": round(100 * (load1 - load0) / (t1 - t0), 1),
            "kernel_udp_receive_drops_on_plateau": drops1 - drops0,
            "database_rss_mib": round(pg_rss / 1024, 1),
            "media_tick_lateness_p99_ms": round(
                1000 * m1.get("cc_media_tick_lateness_p99_seconds", 0), 2
            ),
            "legs_measured": measured,
            "mos_mean": round(m1.get("cc_media_leg_mos_sum", 0) / measured, 3)
            if measured
            else None,
            "legs_mos_at_most_4": m1.get('cc_media_leg_mos_bucket{le="4.0"}', 0),
            "legs_mos_at_most_4_2": m1.get('cc_media_leg_mos_bucket{le="4.2"}', 0),
            "legs_mos_at_most_4_3": m1.get('cc_media_leg_mos_bucket{le="4.3"}', 0),
            **{
                f"packets_{what}_from_{side}": m1.get(
                    f'cc_media_packets_{what}_total{{side="{side}"}}', 0
                )
                for side in ("caller", "operator")
                for what in ("received", "lost")
            },
            "recordings": len(recordings),
            "recordings_mib": round(sum(f.stat().st_size for f in recordings) / 2**20, 1),
            "overload_rejects": m1.get("cc_sip_overload_rejects_total", 0),
        }
        print(json.dumps(out, indent=2))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        if server is not None:
            server.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
