"""A campaign dialing on real SIP for a fixed time: operators, a carrier, the node between.

    scripts/setup.sh release
    .venv/bin/python benches/campaign_sip.py --mode predictive --minutes 30
    .venv/bin/python benches/campaign_sip.py --mode progressive --minutes 15

What runs (all on loopback, all real parts):
- PostgreSQL (embedded, or ``DATABASE_URL``) with ``--operators`` accounts 8000…, each
  registered at one SIPp phone (``agent_answer_talk.xml`` with the talk time drawn uniform
  in [``--talk-min``, ``--talk-max``] seconds: it answers after 200 ms, talks, hangs up);
  the queue ``outbound`` they all serve, wrap-up ``--wrap`` seconds;
- the node (``ccorch serve``), its outbound trunk to SIPp as the carrier
  (``carrier_campaign.xml``): a number's last digit makes it busy (1), ring until the node
  gives up (2, 25 s), an answering machine (3, 7 s of speech) or a person (any other: says
  "hello" then waits); the list is drawn so that ``--live`` of the numbers are people,
  ``--machines`` machines, ``--busy`` busy and the rest ring out;
- the campaign (``--mode``): detection on answer in predictive mode, the 2-second rule,
  one attempt per contact (no retries: every contact is new).

Measured from the node's own records over the dialing window: the operators' talk
occupancy (operator talk time in the window over operators × window; the CDRs' answer and
end times), the abandon rate (abandoned over live answers, from the attempts), calls
placed and their outcomes, and the node's CPU; beside them, the campaign simulator
(``ccorch.dialer.simulate_campaign``) for the same parameters and time. Bounded: the
window and the list are fixed by the arguments, the calls up at the end are left 90 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benches.inbound_load import FIRST_AGENT, database, metrics, prepare_db, serve  # noqa: E402
from benches.sip_load import tree_cpu_seconds  # noqa: E402
from tests.sipp import free_udp_port  # noqa: E402
from tests.test_campaign_dialing import hello_pcap  # noqa: E402

SCEN = REPO / "sip" / "sipp"


def api(base: str, method: str, path: str, body: Any, token: str | None = None) -> Any:
    req = urllib.request.Request(  # noqa: S310 - loopback
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"content-type": "application/json"}
        | ({"authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(req, timeout=60) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def numbers(n: int, live: float, machines: float, busy: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = rng.random()
        last = (
            rng.choice("0456789")
            if x < live
            else "3"
            if x < live + machines
            else "1"
            if x < live + machines + busy
            else "2"
        )
        out.append(f"380{44 + i % 50:02d}{i:06d}{last}")
    return out


def measure(
    db_url: str, campaign: int, t0: dt.datetime, t1: dt.datetime, ops: int
) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(db_url) as conn:
        outcomes = dict(
            conn.execute(
                "SELECT outcome, count(*) FROM campaign_attempts WHERE campaign_id = %s"
                " AND started_at < %s GROUP BY outcome",
                (campaign, t1),
            ).fetchall()
        )
        live, abandoned = conn.execute(
            "SELECT count(*) FILTER (WHERE live_at IS NOT NULL),"
            " count(*) FILTER (WHERE outcome = 'abandoned') FROM campaign_attempts"
            " WHERE campaign_id = %s AND started_at < %s",
            (campaign, t1),
        ).fetchone() or (0, 0)
        # operator talk inside the window, from the calls' records
        talk = conn.execute(
            """SELECT coalesce(sum(extract(epoch FROM least(c.ended_at, %(t1)s)
                                       - greatest(c.answered_at, %(t0)s))), 0),
                      count(*), avg(extract(epoch FROM c.ended_at - c.answered_at))
                 FROM cdrs c JOIN campaign_attempts a ON a.sip_call_id = c.sip_call_id
                WHERE a.campaign_id = %(id)s AND c.answered_at IS NOT NULL
                  AND c.answered_at < %(t1)s AND c.ended_at > %(t0)s""",
            {"t0": t0, "t1": t1, "id": campaign},
        ).fetchone()
        # what detection did, by what each number really is (its last digit, see numbers())
        by_class = conn.execute(
            """SELECT CASE WHEN right(phone, 1) = '3' THEN 'machine'
                           WHEN right(phone, 1) IN ('0','4','5','6','7','8','9') THEN 'person'
                           ELSE 'other' END AS truth,
                      count(*) FILTER (WHERE answered_at IS NOT NULL),
                      count(*) FILTER (WHERE detected = 'machine'),
                      avg(extract(epoch FROM live_at - answered_at))
                 FROM campaign_attempts WHERE campaign_id = %s AND started_at < %s
                GROUP BY 1""",
            (campaign, t1),
        ).fetchall()
        # how the operators' calls ended (a media timeout would cut the talk short)
        endings = dict(
            conn.execute(
                """SELECT c.outcome, count(*) FROM cdrs c
                     JOIN campaign_attempts a ON a.sip_call_id = c.sip_call_id
                    WHERE a.campaign_id = %s AND c.answered_at IS NOT NULL
                      AND c.answered_at < %s GROUP BY 1""",
                (campaign, t1),
            ).fetchall()
        )
    detection = {
        truth: {"answered": n, "taken_for_machines": m, "seconds_to_verdict": float(d or 0)}
        for truth, n, m, d in by_class
    }
    seconds = (t1 - t0).total_seconds()
    return {
        "detection": detection,
        "operator_call_endings": endings,
        "placed": sum(outcomes.values()),
        "outcomes": outcomes,
        "live": live,
        "abandoned": abandoned,
        "abandon_rate": abandoned / live if live else None,
        "talk_occupancy": float(talk[0]) / (ops * seconds) if talk else None,
        "operator_calls": talk[1] if talk else 0,
        "mean_talk_seconds": float(talk[2] or 0) if talk else None,
    }


def simulator(args: argparse.Namespace, measured: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The campaign simulator for the same setup, over many seeds: a 30-minute window's
    talk occupancy spreads by tens of points from one draw to the next, so one draw is
    no reference. Detection's rates are the ones this run measured on the carrier's
    people and machines; the carrier answers after 300 ms; talk is uniform as the
    phones draw it; wrap-up 0.5 s longer for the answer and BYE round trips."""
    from ccorch.dialer import simulate_campaign
    from ccorch.dialer.manager import WARM_UP_LIVE

    det = measured["detection"]

    def share(truth: str) -> float:
        c = det.get(truth) or {}
        return c["taken_for_machines"] / c["answered"] if c.get("answered") else 0.0

    scenario = {
        "agents": args.operators, "day_hours": seconds / 3600, "p_live": args.live,
        "p_machine": args.machines, "p_busy": args.busy,
        "ring_mean": 0.3, "ring_sd": 0.05,
        "talk_min": args.talk_min, "talk_max": args.talk_max,
        "wrap": args.wrap + 0.5,
        "amd_detects_machine": share("machine"), "amd_false_positive": share("person"),
        # a person is known as one when detection has heard the greeting's end
        "detect_seconds": (det.get("person") or {}).get("seconds_to_verdict", 0.0),
        # a machine put through holds the operator as long as the bench's operator talks
        # (uniform talk_min-talk_max) or until it goes quiet: its 7 s recording, then the
        # node's 30 s media timeout; the mean of that
        "machine_talk": mean_min_uniform(args.talk_min, args.talk_max, MACHINE_HOLDS),
    }  # fmt: skip
    occupancy, abandon = [], []
    for seed in range(1, args.sim_seeds + 1):
        # (as the campaign manager sets it: one call per free operator until 50 live answers)
        sim = simulate_campaign(scenario, args.mode, seed, 1, warm_up_live=WARM_UP_LIVE)
        # talk over operators × window (the simulator's own "occupancy" divides by
        # logged-in time, which a short day's bookkeeping stretches)
        occupancy.append(sum(d["talk_seconds"] for d in sim["days"]) / (args.operators * seconds))
        abandon.append(sim["abandon_rate"])
    occupancy.sort()
    return {
        "scenario": scenario,
        "seeds": args.sim_seeds,
        "talk_occupancy_mean": statistics.fmean(occupancy),
        "talk_occupancy_sd": statistics.stdev(occupancy) if len(occupancy) > 1 else 0.0,
        "talk_occupancy_p10_p90": [
            occupancy[len(occupancy) // 10],
            occupancy[(9 * len(occupancy)) // 10 - 1],
        ],
        "abandon_rate_mean": statistics.fmean(abandon),
        "abandon_rate_max": max(abandon),
    }


# A machine of the bench plays its 7 s recording and then sends nothing: the node's 30 s
# media timeout ends a call it is put through on.
MACHINE_HOLDS = 7 + 30


def mean_min_uniform(lo: float, hi: float, cap: float) -> float:
    """E[min(U(lo, hi), cap)]."""
    if cap >= hi:
        return (lo + hi) / 2
    if cap <= lo:
        return cap
    below = (cap - lo) / (hi - lo)
    return below * (lo + cap) / 2 + (1 - below) * cap


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("predictive", "progressive", "power"), default="predictive")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--operators", type=int, default=50)
    ap.add_argument("--live", type=float, default=0.25)
    ap.add_argument("--machines", type=float, default=0.15)
    ap.add_argument("--busy", type=float, default=0.10)
    ap.add_argument("--talk-min", type=float, default=20)
    ap.add_argument("--talk-max", type=float, default=60)
    ap.add_argument("--wrap", type=float, default=5)
    ap.add_argument("--contacts", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sim-seeds", type=int, default=40)
    ap.add_argument(
        "--simulate-from",
        type=Path,
        help="a report this script wrote: recompute its simulator column only",
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    if args.simulate_from:
        old = json.loads(args.simulate_from.read_text())
        # the run's own mode and operators, whatever the command line's defaults say
        args.mode, args.operators = old["mode"], old["operators"]
        old["simulator"] = simulator(args, old["measured"], old["minutes"] * 60)
        print(json.dumps(old["simulator"], indent=2))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ccorch-campaign-"))
    work.mkdir(parents=True, exist_ok=True)
    n = args.operators
    flows = work / "flows"
    flows.mkdir(exist_ok=True)
    queues = [
        f'[[queue]]\nname = "outbound"\nskills = "outbound"\nwrap_up_seconds = {args.wrap}\n'
        "ring_seconds = 10\nexpected_handle_seconds = 45\n"
    ]
    for i in range(n):
        queues.append(
            f'[[agent]]\nextension = "{FIRST_AGENT + i}"\nskills = {{ outbound = 1 }}\n'
            'queues = ["outbound"]\n'
        )
    (flows / "queues.toml").write_text("\n".join(queues))
    sip_port, carrier_port, phone_port = free_udp_port(), free_udp_port(), free_udp_port()
    (work / "trunks.toml").write_text(
        f'[[trunk]]\nname = "carrier"\nhost = "127.0.0.2"\nport = {carrier_port}\n'
        "outbound = true\noptions_interval = 0\n"
    )
    (work / "ccorch.toml").write_text(
        f'[sip]\nport = {sip_port}\ntrunks_file = "{work / "trunks.toml"}"\n'
        "rate_limit = 100000\nrate_burst = 100000\n"
        '[log]\nlevel = "warning"\n'
        f'[media]\nport_min = 30000\nport_max = 39999\nshards = 2\nrecordings_dir = "{work / "rec"}"\n'
        f'[ivr]\nflows_dir = "{flows}"\ntts_cache_dir = "{work / "tts"}"\n'
        "[database]\npool_max = 20\n"
    )
    # People and operators send RTP all through the call, as phones do (a leg silent for
    # 30 s is ended by the node's media timeout): a greeting, then quiet frames.
    longest = args.talk_max + 60
    hello_pcap(work / "hello.pcap", quiet_seconds=longest)
    hello_pcap(work / "operator.pcap", quiet_seconds=longest, law="PCMU")
    talk_scenario = work / "agent_talk.xml"
    talk_scenario.write_text(
        (SCEN / "agent_answer_talk.xml")
        .read_text()
        .replace(
            "<pause/>",
            '<nop><action><exec play_pcap_audio="operator.pcap"/></action></nop>'
            f'<pause distribution="uniform" min="{int(args.talk_min * 1000)}"'
            f' max="{int(args.talk_max * 1000)}"/>',
        )
    )
    db_url, server = database(work)
    procs: list[subprocess.Popen[bytes]] = []
    seconds = args.minutes * 60
    try:
        asyncio.run(prepare_db(db_url, n, [phone_port], "ccorch"))
        node, base = serve(work, db_url, n)
        procs.append(node)
        common = ["-nostdin", "-timeout", f"{int(seconds + 600)}s"]
        procs.append(
            subprocess.Popen(
                ["sipp", "-sf", str(talk_scenario), "-p", str(phone_port),
                 "-mp", str(free_udp_port()), "-m", "1000000", *common],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                ["sipp", "-sf", str(SCEN / "carrier_campaign.xml"), "-i", "127.0.0.2",
                 "-p", str(carrier_port), "-mp", str(free_udp_port()), "-m", "1000000",
                 "-trace_err", "-error_file", str(work / "carrier-errors.log"), *common],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        time.sleep(0.5)
        token = api(base, "POST", "/api/auth/login", {"login": "sup7009", "password": "agent7009"})[
            "token"
        ]
        once = {"attempts": 1, "interval_minutes": 60}
        campaign = api(
            base,
            "POST",
            "/api/campaigns",
            {
                "name": f"bench-{args.mode}",
                "mode": args.mode,
                "queue": "outbound",
                "rules": {
                    "window_start": "00:00", "window_end": "23:59",
                    "weekdays": [1, 2, 3, 4, 5, 6, 7],
                    "retries": {k: once for k in ("busy", "no_answer", "machine", "failed")},
                },
                "dialing": {"ring_seconds": 25, "max_lines": 400}
                | ({"ratio": 2.0} if args.mode == "power" else {}),
            },
            token,
        )  # fmt: skip
        listed = numbers(args.contacts, args.live, args.machines, args.busy, args.seed)
        csv = "phone\n" + "".join(f"+{p}\n" for p in listed)
        imported = api(
            base,
            "POST",
            f"/api/campaigns/{campaign['id']}/contacts",
            {"file_name": "bench.csv", "format": "csv",
             "content_base64": base64.b64encode(csv.encode()).decode(),
             "mapping": {"phone": "phone"}},
            token,
        )  # fmt: skip
        assert imported["accepted"] == len(listed), imported
        cpu0 = tree_cpu_seconds(node.pid)
        t0 = dt.datetime.now(dt.UTC)
        api(base, "PATCH", f"/api/campaigns/{campaign['id']}", {"status": "running"}, token)
        peak = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(5)
            m = metrics(base)
            peak = max(
                peak, m.get(f'cc_campaign_calls_in_flight{{campaign="bench-{args.mode}"}}', 0)
            )
        t1 = dt.datetime.now(dt.UTC)
        cpu = tree_cpu_seconds(node.pid) - cpu0
        api(base, "PATCH", f"/api/campaigns/{campaign['id']}", {"status": "paused"}, token)
        time.sleep(90)  # the calls up at the end finish (their records are written)
        figures = measure(db_url, campaign["id"], t0, t1, n)
        sim = simulator(args, figures, seconds)
        report = {
            "mode": args.mode,
            "minutes": args.minutes,
            "operators": n,
            "measured": figures,
            "simulator": sim,
            "node_cpu_percent_of_one_core": round(100 * cpu / seconds, 1),
            "peak_calls_in_flight": peak,
            "workdir": str(work),
        }
        print(json.dumps(report, indent=2, default=str))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
