"""The live event stream under load: screen-pop latency and fan-out (issue 15).

    .venv/bin/python benches/event_stream.py --clients 500 --role operator --cps 20
    .venv/bin/python benches/event_stream.py --clients 1000 --role supervisor --cps 5 --stalled 1

What runs (all on loopback, all real parts):
- PostgreSQL (embedded, or ``DATABASE_URL``) with ``--clients`` CRM users (operators with
  extensions 8000…, or supervisors) and a session each; the first ``--agents`` operators
  work the queue ``load``, their phones one SIPp (``agent_answer.xml``) answering all;
- the node (``ccorch serve``), its flow ``load`` on DNIS 150 queueing every caller at once;
- SIPp as the carrier: ``--calls`` calls at ``--cps``, each hanging up ``--talk`` seconds
  after the answer;
- a client process with ``--clients`` WebSocket connections to ``/api/events`` (asyncio,
  the ``websockets`` library), plus ``--stalled`` connections that never read.

Measured, in one run: for every ``call.offered`` frame (the screen pop) the delay from the
moment the node published it (the frame's ``at``, taken when the ACD chose the operator) to
its arrival at the operator's client, p50/p99/max; every frame's delay for the others;
frames delivered per second over all clients; the node's CPU (process tree, % of one core)
and the client process's; clients cut off for lagging. The clocks are the same machine's.
What it leaves out: the browser's own parsing and rendering, TLS, and a network between.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benches.inbound_load import (  # noqa: E402
    database,
    load_trunk,
    metrics,
    serve,
    voice_file,
)
from benches.sip_load import tree_cpu_seconds  # noqa: E402
from tests.sipp import free_udp_port  # noqa: E402

SCEN = REPO / "sip" / "sipp"
FIRST = 8000


async def prepare_db(url: str, clients: int, agents: int, role: str, phone_port: int) -> list[str]:
    """Users, sessions, SIP accounts and registrations; the clients' session tokens."""
    import psycopg

    from ccorch.crm.secrets import new_token
    from ccorch.db.migrate import migrate
    from ccorch.sip.registrar import create_account

    await migrate(url)
    tokens: list[str] = []
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for i in range(max(clients, agents)):
            ext = str(FIRST + i)
            cur = await conn.execute(
                """INSERT INTO users (login, full_name, password_hash, extension)
                   VALUES (%s, %s, 'none', %s) RETURNING id""",
                (f"bench{ext}", f"Bench {ext}", ext if role == "operator" or i < agents else None),
            )
            row = await cur.fetchone()
            assert row is not None
            await conn.execute(
                "INSERT INTO user_roles (user_id, role) VALUES (%s, %s)", (row[0], role)
            )
            token, digest = new_token()
            await conn.execute(
                "INSERT INTO sessions (token_sha256, user_id, expires_at)"
                " VALUES (%s, %s, now() + interval '1 day')",
                (digest, row[0]),
            )
            if i < clients:
                tokens.append(token)
            if i < agents:
                await create_account(conn, ext, f"bench{ext}", "ccorch", f"Bench {ext}")
                await conn.execute(
                    """INSERT INTO sip_registrations (username, contact, expires_at, call_id,
                                                      cseq, source, user_agent)
                       VALUES (%s, %s, now() + interval '1 hour', %s, 1, %s, 'SIPp')""",
                    (ext, f"sip:{ext}@127.0.0.1:{phone_port}", f"b-{ext}",
                     f"udp:127.0.0.1:{phone_port}"),
                )  # fmt: skip
        await conn.commit()
    return tokens


CLIENT = r"""
import asyncio, json, sys, time
from websockets.asyncio.client import connect

async def reader(url, out, stop):
    async with connect(url, open_timeout=60, max_queue=None) as ws:
        out["connected"] += 1
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except asyncio.TimeoutError:
                continue
            now = time.time()
            f = json.loads(raw)
            if f.get("type") in ("heartbeat", "resync"):
                continue
            out["frames"] += 1
            d = (now - f["at"]) * 1000
            (out["offer"] if f["type"] == "call.offered" else out["other"]).append(d)

async def stalled(url, stop):
    async with connect(url, open_timeout=60, max_queue=1) as ws:
        await stop.wait()  # never reads: the node must cut it off, not wait for it

async def main():
    urls, n_stalled, seconds = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    out = {"connected": 0, "frames": 0, "offer": [], "other": []}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(reader(u, out, stop)) for u in urls]
    tasks += [asyncio.create_task(stalled(urls[0], stop)) for _ in range(n_stalled)]
    while out["connected"] < len(urls):
        await asyncio.sleep(0.1)
    print("READY", flush=True)
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(out))

asyncio.run(main())
"""


def queue_work(prefix: str, agents: int, sip_extra: str = "") -> tuple[Path, int, int, int]:
    """A node's working folder for a queue bench: the flow ``load`` on DNIS 150 queueing
    every caller at once into ``load``, which ``agents`` operators 8000… serve (no
    wrap-up), the trunk and the config. (The folder, the node's SIP port, the carrier's,
    the phones'.)"""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    flows = work / "flows"
    flows.mkdir()
    (flows / "load.yaml").write_text(
        'flow: load\ndnis: ["150"]\nlanguage: en\nstart: wait\nnodes:\n'
        "  wait:\n    type: queue\n    queue: load\n"
    )
    queues = ['[[queue]]\nname = "load"\nskills = "load"\nwrap_up_seconds = 0\nring_seconds = 20\n']
    queues += [
        f'[[agent]]\nextension = "{FIRST + i}"\nskills = {{ load = 1 }}\nqueues = ["load"]\n'
        for i in range(agents)
    ]
    (flows / "queues.toml").write_text("\n".join(queues))
    sip_port, trunk_port, phone_port = load_trunk(work)
    (work / "ccorch.toml").write_text(
        f'[sip]\nport = {sip_port}\ntrunks_file = "{work / "trunks.toml"}"\n{sip_extra}'
        '[log]\nlevel = "warning"\n'
        f'[media]\nport_min = 30000\nport_max = 39999\nrecordings_dir = "{work / "rec"}"\n'
        f'[ivr]\nflows_dir = "{flows}"\ntts_cache_dir = "{work / "tts"}"\n'
    )
    return work, sip_port, trunk_port, phone_port


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--role", choices=("operator", "supervisor"), default="operator")
    ap.add_argument("--agents", type=int, default=40, help="operators working the queue")
    ap.add_argument("--calls", type=int, default=600)
    ap.add_argument("--cps", type=float, default=20)
    ap.add_argument("--talk", type=float, default=1.5)
    ap.add_argument("--stalled", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work, sip_port, trunk_port, phone_port = queue_work(
        "ccorch-events-", args.agents, "rate_limit = 100000\nrate_burst = 100000\n"
    )
    db_url, server = database(work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tokens = asyncio.run(prepare_db(db_url, args.clients, args.agents, args.role, phone_port))
        node, base = serve(work, db_url, args.agents)
        procs.append(node)
        http = int(base.rsplit(":", 1)[1])
        seconds = args.calls / args.cps + args.talk + 8
        urls = [f"ws://127.0.0.1:{http}/api/events?token={t}" for t in tokens]
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, json.dumps(urls), str(args.stalled), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=(work / "client.log").open("wb"),
            text=True,
        )
        procs.append(client)
        assert client.stdout is not None
        if client.stdout.readline().strip() != "READY":
            raise SystemExit(f"clients did not connect: {(work / 'client.log').read_text()}")
        phones = subprocess.Popen(
            ["sipp", "-sf", str(SCEN / "agent_answer.xml"), "-d", "50", "-p", str(phone_port),
             "-mp", str(free_udp_port()), "-m", str(args.calls), "-nostdin",
             "-timeout", f"{int(seconds + 60)}s"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(phones)
        voice_file(work / "load-voice.ulaw")
        time.sleep(0.5)
        cpu0, t0 = tree_cpu_seconds(node.pid), time.monotonic()
        ccpu0 = tree_cpu_seconds(client.pid)
        callers = subprocess.Popen(
            ["sipp", "-sf", str(SCEN / "trunk_load_call.xml"), "-s", "150",
             "-d", str(int(args.talk * 1000)), "-r", str(args.cps), "-m", str(args.calls),
             "-p", str(trunk_port), "-mp", str(free_udp_port()), "-nostdin",
             "-timeout", f"{int(seconds + 60)}s", f"127.0.0.1:{sip_port}"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(callers)
        callers.wait(seconds + 90)
        cpu1, t1 = tree_cpu_seconds(node.pid), time.monotonic()
        ccpu1 = tree_cpu_seconds(client.pid)
        out_text, _ = client.communicate(timeout=seconds + 60)
        got = json.loads(out_text.strip().splitlines()[-1])
        m = metrics(base)
        offers, other = got["offer"], got["other"]
        result = {
            "clients": args.clients,
            "role": args.role,
            "stalled_clients": args.stalled,
            "calls": args.calls,
            "cps": args.cps,
            "answered": m.get('cc_queue_calls_total{outcome="answered",queue="load"}', 0),
            "screen_pops_received": len(offers),
            "screen_pop_ms_p50": pct(offers, 0.5),
            "screen_pop_ms_p99": pct(offers, 0.99),
            "screen_pop_ms_max": pct(offers, 1.0),
            "frames_received": got["frames"],
            "frames_per_second": round(got["frames"] / (t1 - t0), 1),
            "frame_ms_p50": pct(other, 0.5),
            "frame_ms_p99": pct(other, 0.99),
            "node_cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "client_cpu_percent_of_one_core": round(100 * (ccpu1 - ccpu0) / (t1 - t0), 1),
            "seconds": round(t1 - t0, 1),
            "clients_cut_off_for_lagging": m.get("cc_events_readers_cut_off_total", 0),
            "mean_offer_ms": round(statistics.fmean(offers), 2) if offers else None,
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
