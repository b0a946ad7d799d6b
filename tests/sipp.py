"""Running SIPp (Debian ``sip-tester``) against a ccorch node: the real peer of the SIP tests."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "sip" / "sipp"
DEMO_SCENARIOS = REPO / "ccorch" / "demo" / "sipp"
DEMO_FLOWS = REPO / "ccorch" / "demo" / "flows"  # shipped in the wheel for demo-call


def demo_flows_copy(where: Path) -> Path:
    """The demo's flows copied to ``where`` (a FlowStore keeps versions beside its files:
    never in the package)."""
    import shutil

    shutil.copytree(DEMO_FLOWS, where, ignore=shutil.ignore_patterns(".versions"))
    return where


def scenario(name: str) -> Path:
    """A SIPp scenario of the tests' own, or one of the demo's (the package's)."""
    own = SCENARIOS / name
    return own if own.exists() else DEMO_SCENARIOS / name


_handed_out: set[int] = set()
# Under pytest-xdist each worker takes its own residue of the ports, so two workers never
# hand out the same port between one's check and its bind.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def _outside_ephemeral() -> range | None:
    """Ports above the kernel's ephemeral range (up to 65000: SIPp's -mp takes a few above
    its port), which no connect() or bind(0) of any process takes behind our back."""
    try:
        lo_hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        span = range(int(lo_hi[1]) + 1, 65001)
    except (OSError, ValueError, IndexError):
        return None
    return span if len(span) >= 1000 else None


_SPARE = _outside_ephemeral()


def _bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (SIPp binds UDP; the node may use both), and never
    one handed out before in this run: a port chosen for a trunk but not yet bound is free
    to the kernel, and was once given to a phone as well (two SIPps, one port).

    Taken above the kernel's ephemeral range where there is room: a port taken from inside
    it (bind to 0) could be given to some process's outgoing connection before the node
    binds it (CI saw a node's HTTP port "already in use" that way)."""
    mine = int(_WORKER or 0) % _WORKERS
    if _SPARE is not None:
        for _ in range(len(_SPARE)):
            port = random.choice(_SPARE)
            if port in _handed_out or port % _WORKERS != mine:
                continue
            if _bindable(host, port):
                _handed_out.add(port)
                return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
        if port in _handed_out or port % _WORKERS != mine:
            continue
        if _bindable(host, port):
            _handed_out.add(port)
            return port


@dataclass(repr=False)
class SippResult:
    code: int
    out: str
    errors: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def __repr__(self) -> str:
        return f"sipp exit {self.code}\n{self.out[-1500:]}\nerrors:\n{self.errors[-3000:]}"


def free_media_ports(host: str = "127.0.0.1", count: int = 4) -> int:
    """The first of ``count`` consecutive free ports, for SIPp's ``-mp``: it binds audio RTP
    and RTCP there and video RTP and RTCP above (CI: SIPp exited 254 when the video port,
    two above a free ``-mp``, was in use)."""
    for _ in range(1000):
        base = free_udp_port(host)
        block = range(base + 1, base + count)
        if base + count - 1 <= 65000 and all(
            p not in _handed_out and _bindable(host, p) for p in block
        ):
            _handed_out.update(block)
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def _args(
    name: str, target: str | None, port: int, cwd: Path, extra: list[str], m: int
) -> list[str]:
    args = [
        "sipp",
        "-sf",
        str(scenario(name)),
        "-p",
        str(port),
        "-m",
        str(m),
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(cwd / f"{name}-{port}-errors.log"),
        "-mp",
        str(free_media_ports()),
        *extra,
    ]
    if target is not None:
        args.append(target)
    return args


def run(
    scenario: str,
    target: str,
    *,
    port: int,
    cwd: Path,
    extra: list[str] | None = None,
    m: int = 1,
    timeout: float = 60,
) -> SippResult:
    args = _args(scenario, target, port, cwd, [*(extra or []), "-timeout", f"{int(timeout)}s"], m)
    p = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout + 15)
    return SippResult(p.returncode, p.stdout + p.stderr, _errors(cwd, scenario, port))


def register_phone(
    target: str,
    cwd: Path,
    ext: str,
    *,
    source_ip: str = "127.0.0.1",
    expires: int = 300,
    tcp: bool = False,
    contact_port: int | None = None,
) -> int:
    """Register the demo phone ``ext`` (password agent<ext>) with SIPp; returns the port its
    Contact names, where a ``Uas`` then answers for it. ``expires=0`` with the
    ``contact_port`` of an earlier registration takes that one off."""
    phone_port = contact_port or free_udp_port()
    for _ in range(3):
        r = run(
            "agent_register.xml",
            target,
            port=free_udp_port(),
            cwd=cwd,
            extra=["-s", ext, "-au", ext, "-ap", f"agent{ext}", "-i", source_ip]
            + ["-key", "contact_port", str(phone_port), "-key", "expires", str(expires)]
            + (["-t", "t1"] if tcp else []),
            timeout=10,
        )
        # 254: SIPp could not bind a socket (one of the media ports it takes next to
        # -mp was in use, by a node's RTP for one): again, on other ports
        if r.code != 254:
            break
    assert r.ok, r
    return phone_port


class Uas:
    """A SIPp phone waiting for calls in the background."""

    def __init__(
        self,
        scenario: str,
        *,
        port: int,
        cwd: Path,
        extra: list[str] | None = None,
        m: int = 1,
        timeout: float = 60,
    ) -> None:
        self.scenario, self.port, self.cwd = scenario, port, cwd
        args = _args(scenario, None, port, cwd, [*(extra or []), "-timeout", f"{int(timeout)}s"], m)
        self.proc = subprocess.Popen(
            args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        time.sleep(0.3)  # bound before the first INVITE can arrive

    def wait(self, timeout: float = 90) -> SippResult:
        out, _ = self.proc.communicate(timeout=timeout)
        return SippResult(
            self.proc.returncode, out or "", _errors(self.cwd, self.scenario, self.port)
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()  # reaped, its output pipe closed


def _errors(cwd: Path, scenario: str, port: int) -> str:
    f = cwd / f"{scenario}-{port}-errors.log"
    return f.read_text(errors="replace") if f.exists() else ""


def metrics(base: str) -> dict[str, float]:
    """The node's /metrics as {"name{labels}": value}."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = re.match(r"^(\S+)\s+(\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
    return out


def wait_for(pred: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
