"""What SIP over TLS costs a node per connection: full TLS handshakes against plain TCP
connects, to the same node in one run.

    .venv/bin/python benches/tls_handshake.py --connections 300

A node is started with the embedded PostgreSQL and a certificate from a throwaway CA
(ECDSA P-256, as tests/certs.py makes); the client connects N times in a row over TCP to
the SIP port, then N times over TLS to the SIPS port (a full handshake each: no session
resumption), and closes each connection. Reported: the client's wall time per connection
(median, p99) and the node's CPU seconds (utime+stime of its process) per connection.
Loopback only; bounded by --connections.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.certs import make_ca, make_leaf  # noqa: E402
from tests.sipp import free_udp_port  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(n: int, connect: object, pid: int) -> dict[str, float]:
    times = []
    cpu0 = cpu_seconds(pid)
    for _ in range(n):
        t0 = time.perf_counter()
        connect()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    time.sleep(0.5)  # let the node finish closing
    cpu = cpu_seconds(pid) - cpu0
    times.sort()
    return {
        "median_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
        "node_cpu_ms_per_connection": cpu / n * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ca = make_ca(work / "pki")
        leaf = make_leaf(work / "pki", "node")
        sip, sips, http = free_udp_port(), free_udp_port(), free_udp_port()
        (work / "ccorch.toml").write_text(
            f"[http]\nport = {http}\n[sip]\nport = {sip}\ntls_port = {sips}\n"
            f'tls_cert = "{leaf.cert}"\ntls_key = "{leaf.key}"\n'
            f"[media]\nport_min = 30000\nport_max = 30099\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCORCH_")}
        env.pop("DATABASE_URL", None)
        node = subprocess.Popen(
            [sys.executable, "-m", "ccorch", "serve"],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            trust = ssl.create_default_context(cafile=str(ca))

            def tcp() -> None:
                with socket.create_connection(("127.0.0.1", sip)):
                    pass

            def tls() -> None:
                with (
                    socket.create_connection(("127.0.0.1", sips)) as raw,
                    trust.wrap_socket(raw, server_hostname="127.0.0.1") as s,
                ):
                    s.version()

            out = {
                "tcp": run(args.connections, tcp, node.pid),
                "tls": run(args.connections, tls, node.pid),
            }
            out["ratio_node_cpu_tls_over_tcp"] = out["tls"]["node_cpu_ms_per_connection"] / max(
                out["tcp"]["node_cpu_ms_per_connection"], 1e-9
            )
            print(json.dumps(out, indent=2))
        finally:
            node.terminate()
            node.wait(30)


if __name__ == "__main__":
    main()
