"""Bridged-leg load bench: ccorch's media engine and rtpengine side by side on loopback.

    scripts/setup.sh release
    cargo build --release --example rtp_load -p ccorch-media
    .venv/bin/python benches/media_load.py --legs 2500 --modes decoded,passthrough,rtpengine

Each run starts the relay under test in its own process, bridges ``--legs`` legs in pairs,
points the Rust generator (``core-rs/media/examples/rtp_load.rs``) at them (one phone per
leg, 50 packets/s each way), and measures over the window after warm-up:

* the relay's CPU time over wall time (from /proc: % of one core; one media thread);
* packets lost (by RTP sequence per stream) and the largest gap;
* frame lateness of the engine's 20 ms clock (p99, ours only; rtpengine does not pace);
* resident memory per leg (RSS after allocation minus before, over legs).

Modes: ``decoded`` (jitter buffer, RFC 4733 detection, decode/mix/encode every 20 ms),
``inband`` (decoded plus Goertzel DTMF detection on every leg), ``passthrough`` (re-stamped
forwarding), ``rtpengine`` (Debian's rtpengine, userspace relaying: --table=-1), and
``record`` (one stereo recording per leg; every recorded frame is checked afterwards).
Only loopback is used and every run is bounded by --warmup + --duration seconds.

``--baseline DIR`` also runs every one of our modes against another build of ccorch (a
directory holding its ``ccorch`` package, e.g. an unpacked wheel of an earlier commit), in
the same run, labelled ``<mode>@baseline``: before and after side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LOADGEN = REPO / "target" / "release" / "examples" / "rtp_load"
TICKS = os.sysconf("SC_CLK_TCK")
# The relay under test and the generator each get a core of their own (on a 2-core box the
# generator would otherwise steal the relay's time and show up as its lateness).
PIN_RELAY = ["taskset", "-c", "0"]
PIN_GENERATOR = ["taskset", "-c", "1"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


ENGINE_CHILD = """
import json, sys, tempfile, time, wave
from ccorch._core import MediaEngine, g711_decode
from ccorch.media import raise_open_file_limit, decode_event, RecordingStopped
legs, mode = int(sys.argv[1]), sys.argv[2]
raise_open_file_limit(4 * legs + 100)
e = MediaEngine(port_min=20000, port_max=39998, shards=1, passthrough=(mode == "passthrough"))
print(json.dumps({"ready": True}), flush=True)
sys.stdin.readline()
ports, recs, leg_ids = [], [], []
tmp = tempfile.TemporaryDirectory()
if mode == "record":
    # One recording per leg (its audio on the left), legs not bridged.
    for i in range(legs):
        leg, port = e.allocate_leg(i, media_timeout_ms=0, jitter_min_ms=60)
        recs.append(e.start_recording(f"{tmp.name}/{i}.wav", leg, None))
        ports.append(port)
        leg_ids.append(leg)
else:
    for i in range(0, legs, 2):
        a, pa = e.allocate_leg(i, inband_dtmf=(mode == "inband"), media_timeout_ms=0)
        b, pb = e.allocate_leg(i, inband_dtmf=(mode == "inband"), media_timeout_ms=0)
        e.bridge(a, b)
        ports += [pa, pb]
print(json.dumps({"ports": ports}), flush=True)
for line in sys.stdin:
    stats = e.stats(reset=line.strip() == "reset")
    if line.strip() == "final" and recs:
        jb = [e.leg_stats(x) for x in leg_ids]
        for k in ("late", "concealed_frames", "inserted_frames", "skipped_frames", "resyncs"):
            stats["jitter_buffer_" + k] = sum(x[k] for x in jb)
        for r in recs:
            e.stop_recording(r)
        stopped, deadline = [], time.monotonic() + 60
        while len(stopped) < len(recs) and time.monotonic() < deadline:
            stopped += [x for x in map(decode_event, e.drain_events()) if isinstance(x, RecordingStopped)]
            time.sleep(0.05)
        # The generator sends one fixed payload: every recorded frame must be exactly it.
        expected = g711_decode(bytes((i * 7) % 255 for i in range(160)), "PCMU")
        gaps = frames = late_gaps = 0
        for x in stopped:
            with wave.open(str(x.path)) as w:
                data = w.readframes(w.getnframes())
            left = b"".join(data[k : k + 2] for k in range(0, len(data), 4))
            blocks = [left[k : k + 320] for k in range(0, len(left) - 319, 320)]
            hits = [k for k, b in enumerate(blocks) if b == expected]
            # From the first frame of the stream to its last (the generator stops first).
            body = blocks[hits[0] : hits[-1] + 1] if hits else []
            frames += len(body)
            gaps += sum(1 for b in body if b != expected)
            late_gaps += sum(1 for b in body[100:] if b != expected)
        stats.update(recordings_closed=len(stopped), recorded_frames=frames, gap_frames=gaps,
                     gap_frames_after_2s=late_gaps)
    print(json.dumps(stats), flush=True)
"""


def bencode(x: Any) -> bytes:
    if isinstance(x, int):
        return b"i%de" % x
    if isinstance(x, str):
        x = x.encode()
    if isinstance(x, bytes):
        return b"%d:%s" % (len(x), x)
    if isinstance(x, list):
        return b"l" + b"".join(bencode(i) for i in x) + b"e"
    if isinstance(x, dict):
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(x.items())) + b"e"
    raise TypeError(type(x))


def sdp(port: int) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )


def sdp_port(answer: bytes) -> int:
    text = answer.decode(errors="replace")
    for line in text.split("\r\n"):
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise RuntimeError(f"no m=audio in rtpengine reply: {text[:300]}")


class Relay:
    pid: int

    def setup(self, legs: int, gen_ports: list[int]) -> list[int]:
        raise NotImplementedError

    def stats(self, reset: bool = False, final: bool = False) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        raise NotImplementedError


class Ours(Relay):
    def __init__(self, mode: str, build: Path = REPO) -> None:
        # `build` is where `import ccorch` finds the package: this checkout or a baseline.
        self.build = build
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ENGINE_CHILD, "0", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=build,
        )
        self.mode = mode
        self.pid = self.proc.pid

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        return dict(json.loads(self.proc.stdout.readline()))

    def setup(self, legs: int, gen_ports: list[int]) -> list[int]:
        # Restart with the leg count (the child reads it from argv).
        self.proc.kill()
        self.proc.wait()
        self.proc = subprocess.Popen(
            [*PIN_RELAY, sys.executable, "-c", ENGINE_CHILD, str(legs), self.mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=self.build,
        )
        self.pid = self.proc.pid
        self._line()
        self.rss_before = rss_kib(self.pid)
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return list(self._line()["ports"])

    def stats(self, reset: bool = False, final: bool = False) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("reset\n" if reset else "final\n" if final else "stats\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class RtpEngine(Relay):
    NG = ("127.0.0.1", 22229)

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.proc = subprocess.Popen(
            [
                *(
                    "rtpengine",
                    "--table=-1",
                    "--interface=127.0.0.1",
                    f"--listen-ng={self.NG[0]}:{self.NG[1]}",
                ),
                *("--foreground", "--log-stderr", "--log-level=3", "--num-threads=1"),
                *("--port-min=40000", "--port-max=59999", f"--pidfile={self.tmp.name}/pid"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.proc.pid
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2)
        self.cookie = 0
        for _ in range(50):
            try:
                self.ng({"command": "ping"})
                break
            except OSError:
                time.sleep(0.1)
        self.rss_before = rss_kib(self.pid)

    def ng(self, msg: dict[str, Any]) -> bytes:
        self.cookie += 1
        cookie = b"c%d " % self.cookie
        self.sock.sendto(cookie + bencode(msg), self.NG)
        while True:
            data, _ = self.sock.recvfrom(65536)
            if data.startswith(cookie):
                return data[len(cookie) :]

    def setup(self, legs: int, gen_ports: list[int]) -> list[int]:
        targets = []
        for i in range(0, legs, 2):
            call = f"bench-{i}"
            offer = self.ng(
                {"command": "offer", "call-id": call, "from-tag": "a", "sdp": sdp(gen_ports[i])}
            )
            answer = self.ng(
                {
                    "command": "answer",
                    "call-id": call,
                    "from-tag": "a",
                    "to-tag": "b",
                    "sdp": sdp(gen_ports[i + 1]),
                }
            )
            # The caller sends where the answer says; the callee where the offer says.
            targets += [sdp_port(answer), sdp_port(offer)]
        return targets

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.tmp.cleanup()


def run(
    mode: str, legs: int, warmup: float, duration: float, baseline: Path | None = None
) -> dict[str, Any]:
    relay: Relay = RtpEngine() if mode == "rtpengine" else Ours(mode, baseline or REPO)
    try:
        # The generator binds its sockets first when the relay must know them (rtpengine).
        # Generator ports come from 10000-19999, clear of both relays' ranges.
        gen_ports = []
        for port in range(10000, 20000):
            if len(gen_ports) == legs:
                break
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            gen_ports.append(port)
        targets = relay.setup(legs, gen_ports)
        rss_after = rss_kib(relay.pid)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(map(str, targets)))
        args = [
            str(LOADGEN),
            "--targets",
            f.name,
            "--warmup",
            str(warmup),
            "--duration",
            str(duration),
        ]
        args += ["--bind-ports", ",".join(map(str, gen_ports))]
        gen = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        time.sleep(warmup)
        relay.stats(reset=True)
        cpu0, t0 = cpu_seconds(relay.pid), time.monotonic()
        time.sleep(duration)
        cpu1, t1 = cpu_seconds(relay.pid), time.monotonic()
        engine = relay.stats()
        out, _ = gen.communicate(timeout=warmup + duration + 30)
        if mode == "record":
            engine.update(relay.stats(final=True))
        os.unlink(f.name)
        load = json.loads(out)
        return {
            "mode": mode + ("@baseline" if baseline else ""),
            "legs": legs,
            "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "cpu_us_per_leg_second": round(1e6 * (cpu1 - cpu0) / (t1 - t0) / legs, 2),
            "rss_kib_per_leg": round((rss_after - getattr(relay, "rss_before", 0)) / legs, 1),
            "lost": load["lost"],
            "expected": load["expected"],
            "max_gap": load["max_gap"],
            "silent_streams": load["silent_streams"],
            "generator_late_ticks": load["generator_late_ticks"],
            "lateness_p99_ms": engine.get("lateness_p99_ms"),
            "lateness_max_ms": engine.get("lateness_max_ms"),
            "tick_busy_ms_mean": round(
                engine.get("tick_busy_us_total", 0) / max(engine.get("ticks", 1), 1) / 1000, 2
            ),
            "passthrough_rooms": engine.get("passthrough_rooms"),
            "skipped_ticks": engine.get("skipped_ticks"),
            **{
                k: v
                for k, v in engine.items()
                if k.startswith(("record", "gap_", "jitter_buffer_"))
            },
        }
    finally:
        relay.close()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--legs", type=int, default=2500)
    p.add_argument("--modes", default="decoded,passthrough,rtpengine")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another build's ccorch package: its modes run too",
    )
    a = p.parse_args()
    if not LOADGEN.exists():
        sys.exit(
            f"build the generator first: cargo build --release --example rtp_load -p ccorch-media ({LOADGEN})"
        )
    duration = min(a.duration, 120.0)
    for mode in a.modes.split(","):
        print(json.dumps(run(mode, a.legs, a.warmup, duration)), flush=True)
        if a.baseline and mode != "rtpengine":
            print(json.dumps(run(mode, a.legs, a.warmup, duration, a.baseline)), flush=True)


if __name__ == "__main__":
    main()
