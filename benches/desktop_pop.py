"""The operator desktop in the browser: screen pop, bundle size and time to interactive
(issue 16).

    scripts/setup.sh release
    .venv/bin/python benches/desktop_pop.py --calls 200 --operators 4

What runs (all on loopback, all real parts):
- PostgreSQL (embedded, or ``DATABASE_URL``) with the demo tenant and ``--operators``
  operators 8000…, each with a session and a SIP registration whose Contact is one SIPp
  phone (``agent_answer.xml``: answers every offer);
- the node (``ccorch serve``), its flow ``load`` on DNIS 150 queueing every caller at once
  (no prompts, so the figure is the desktop's, not the IVR's);
- Debian's Chromium, headless, driven by Playwright: one browser context per operator with
  the desktop open (the built app the node serves at ``/``);
- SIPp as the carrier: ``--calls`` calls at ``--cps`` from Ivan Petrenko's number (the demo
  customer: a card with phones, an account, reminders and a growing history), each hanging
  up ``--talk`` seconds after the answer.

Measured: for every offer, from the moment the node published ``call.offered`` (the frame's
``at``: the ACD chose the operator) to the moment the desktop had rendered the whole card
(the app's User Timing mark ``ccorch:screen-pop``, set after the card and the history came
from the REST API and the DOM was updated), p50/p95/max; pops missing; the built app's size
(gzip -9 of every asset); time to interactive: navigation start to the operator's state on
screen (mark ``ccorch:interactive``), median of ``--loads`` cold loads in fresh contexts.
The clocks are the same machine's. Leaves out: paint after the DOM update (a frame, ~16 ms
at 60 Hz), TLS, a network between, and a slower client machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benches.event_stream import pct, prepare_db, queue_work  # noqa: E402
from benches.inbound_load import database, serve, voice_file  # noqa: E402
from tests.chromium import CHROMIUM, CHROMIUM_FLAGS  # noqa: E402
from tests.sipp import free_udp_port  # noqa: E402

SCEN = REPO / "sip" / "sipp"
DIST = REPO / "ccorch" / "web" / "dist"
FIRST = 8000


def bundle_sizes() -> dict[str, int]:
    """Bytes of the built app: raw and gzip -9, all assets and the page."""
    files = [p for p in DIST.rglob("*") if p.is_file()]
    raw = sum(p.stat().st_size for p in files)
    packed = sum(len(gzip.compress(p.read_bytes(), 9)) for p in files)
    return {"files": len(files), "raw_bytes": raw, "gzip_bytes": packed}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--operators", type=int, default=4)
    ap.add_argument("--cps", type=float, default=2.0)
    ap.add_argument("--talk", type=float, default=1.0)
    ap.add_argument("--loads", type=int, default=20, help="cold loads for time to interactive")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from playwright.sync_api import Page, sync_playwright

    work, sip_port, trunk_port, phone_port = queue_work("ccorch-desktop-", args.operators)
    db_url, server = database(work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tokens = asyncio.run(
            prepare_db(db_url, args.operators, args.operators, "operator", phone_port)
        )
        node, base = serve(work, db_url, args.operators)
        procs.append(node)
        seconds = args.calls / args.cps + args.talk + 10
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)

            def desktop(token: str) -> Page:
                context = browser.new_context(locale="en")
                context.add_cookies([{"name": "ccorch_session", "value": token, "url": base}])
                # the operators answer on the bench's SIPp phones, not in the browser
                context.add_init_script("localStorage.setItem('ccorch.phone', 'off')")
                page = context.new_page()
                page.goto(base + "/")
                page.wait_for_selector("[data-testid=agent-state]", timeout=30_000)
                return page

            # time to interactive: cold loads (a fresh context: nothing cached)
            tti: list[float] = []
            for _ in range(args.loads):
                page = desktop(tokens[0])
                # (polled from here: the page's CSP forbids the eval wait_for_function uses)
                while not page.evaluate(
                    "performance.getEntriesByName('ccorch:interactive').length > 0"
                ):
                    page.wait_for_timeout(20)
                tti.append(
                    page.evaluate("performance.getEntriesByName('ccorch:interactive')[0].startTime")
                )
                page.context.close()

            pages = [desktop(t) for t in tokens]
            phones = subprocess.Popen(
                ["sipp", "-sf", str(SCEN / "agent_answer.xml"), "-d", "50", "-p",
                 str(phone_port), "-mp", str(free_udp_port()), "-m", str(args.calls),
                 "-nostdin", "-timeout", f"{int(seconds + 60)}s", "-trace_err"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=(work / "phones.log").open("wb"),
            )  # fmt: skip
            procs.append(phones)
            voice_file(work / "load-voice.ulaw")  # what each caller says
            time.sleep(0.5)
            callers = subprocess.Popen(
                ["sipp", "-sf", str(SCEN / "trunk_load_call.xml"), "-s", "150",
                 "-d", str(int(args.talk * 1000)), "-r", str(args.cps), "-m", str(args.calls),
                 "-p", str(trunk_port), "-mp", str(free_udp_port()), "-nostdin",
                 "-timeout", f"{int(seconds + 60)}s", "-trace_err", f"127.0.0.1:{sip_port}"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=(work / "callers.log").open("wb"),
            )  # fmt: skip
            procs.append(callers)
            deadline = time.monotonic() + seconds + 90
            while callers.poll() is None and time.monotonic() < deadline:
                for page in pages:  # the pages live on Playwright's loop: let it run
                    page.wait_for_timeout(100)
            pops: list[float] = []
            for page in pages:
                page.wait_for_timeout(1000)
                marks = page.evaluate(
                    "performance.getEntriesByName('ccorch:screen-pop').map("
                    "m => [m.detail.at, performance.timeOrigin + m.startTime])"
                )
                pops += [rendered - at * 1000 for at, rendered in marks]
            browser.close()
        result = {
            "calls": args.calls,
            "operators": args.operators,
            "cps": args.cps,
            "screen_pops_rendered": len(pops),
            "screen_pop_ms_p50": pct(pops, 0.5),
            "screen_pop_ms_p95": pct(pops, 0.95),
            "screen_pop_ms_max": pct(pops, 1.0),
            "screen_pop_ms_mean": round(statistics.fmean(pops), 1) if pops else None,
            "time_to_interactive_ms_median": round(statistics.median(tti), 1),
            "time_to_interactive_ms_max": round(max(tti), 1),
            "bundle": bundle_sizes(),
            "sipp_exit": callers.returncode,
            "work": str(work),
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
