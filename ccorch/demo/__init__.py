"""``ccorch demo-call``: place a demo call into a running node with SIPp, no phone needed.

- option 3 (default): the seed's self-service: press 3, contract 1001#, PIN 1234#, hear the
  balance; the flow hangs up.
- option 1 or 2: an operator's phone (7001 or 7003, a SIPp that answers and hangs up after
  a few seconds) registers, and the call goes through the queue to it.
- ``--keys``: any keys instead, e.g. the utility line's meter reading (``--dnis 111 --ani
  0442223344 --keys 1,12500#,1``).

The call comes from the configured trunk on loopback (``sip/trunks.toml``: demo-carrier,
127.0.0.1:5070): SIPp does the signaling, and the caller's RTP end is here (it presses the
keys as RFC 4733 events and counts what it hears). The operator's phone registers from here
too, answering the node's digest challenge with the first algorithm offered (SHA-256 by
default; SIPp reads only the first challenge and knows MD5 only), then SIPp answers calls on
its contact port. Watch the node's log and ``/metrics``.

This package also carries the demo tenant's working files (its flows and queues, the demo
carrier's trunk, the SIPp scenarios of this command), so an installed wheel runs the demo
as a source checkout does: :func:`seed_working_files` copies what is missing into place.
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from ccorch.config import Config
from ccorch.sip.trunks import load_trunks

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "sipp"
DEMO_FLOWS = HERE / "flows"
DEMO_TRUNKS = HERE / "trunks.toml"
OPERATORS = {1: "7001", 2: "7003"}


def seed_working_files(config: Config) -> list[Path]:
    """The demo's flows folder and trunks file, copied where the configuration looks for
    them when they are not there yet (first start; never overwritten): what was copied."""
    from ccorch.config import IvrConfig, SipConfig

    made: list[Path] = []
    flows = Path(config.ivr.flows_dir)
    if config.ivr.flows_dir == IvrConfig.flows_dir and not flows.exists():
        flows.mkdir(parents=True)
        for f in sorted(DEMO_FLOWS.iterdir()):
            if f.suffix in (".yaml", ".toml"):
                shutil.copyfile(f, flows / f.name)
                made.append(flows / f.name)
    trunks = Path(config.sip.trunks_file)
    if config.sip.trunks_file == SipConfig.trunks_file and not trunks.exists():
        trunks.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO_TRUNKS, trunks)
        made.append(trunks)
    return made


def register(
    target: tuple[str, int], ext: str, password: str, contact_port: int, expires: int = 120
) -> int:
    """REGISTER ``ext`` with its contact at 127.0.0.1:``contact_port``, answering the
    node's first digest challenge (whichever algorithm it offers first); the final status."""
    status, _ = _register(target, ext, password, contact_port, expires)
    return status


def bindings_of(target: tuple[str, int], ext: str, password: str) -> list[str]:
    """The contacts ``ext`` is registered at now (a REGISTER without Contact asks, RFC 3261
    §10.2.3); empty when none or when the node would not say."""
    status, contacts = _register(target, ext, password, None)
    return contacts if status == 200 else []


def _register(
    target: tuple[str, int], ext: str, password: str, contact_port: int | None, expires: int = 120
) -> tuple[int, list[str]]:
    from ccorch.sip import digest
    from ccorch.sip.dialog import new_call_id, new_tag
    from ccorch.sip.message import Response, parse
    from ccorch.sip.transaction import new_branch

    host, port = target
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        local = sock.getsockname()[1]
        call_id, tag = new_call_id("127.0.0.1"), new_tag()
        uri = f"sip:{host}:{port}"
        auth: str | None = None
        for cseq in (1, 2):
            lines = [
                f"REGISTER {uri} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={new_branch()};rport",
                "Max-Forwards: 70",
                f"From: <sip:{ext}@{host}>;tag={tag}",
                f"To: <sip:{ext}@{host}>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} REGISTER",
                "User-Agent: ccorch demo-call",
            ]
            if contact_port is not None:
                lines.append(f"Contact: <sip:{ext}@127.0.0.1:{contact_port};transport=udp>")
                lines.append(f"Expires: {expires}")
            if auth is not None:
                lines.append(f"Authorization: {auth}")
            request = ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()
            resp: Response | None = None
            for _ in range(4):  # UDP: send again if nothing came back
                sock.sendto(request, (host, port))
                try:
                    data, _addr = sock.recvfrom(65535)
                except TimeoutError:
                    continue
                got = parse(data)
                if isinstance(got, Response) and got.status >= 200:
                    resp = got
                    break
            if resp is None:
                return 408, []
            challenges = resp.get_all("www-authenticate")
            if resp.status != 401 or not challenges or auth is not None:
                return resp.status, resp.get_all("contact")
            auth = digest.authorization(challenges[0], "REGISTER", uri, ext, password)
        return 401, []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _free_media_ports(count: int = 4) -> int:
    """The first of ``count`` consecutive free UDP ports, for SIPp's ``-mp``: it binds audio
    RTP and RTCP there and video RTP and RTCP above, and exits (254) when one is taken."""
    for _ in range(200):
        base = _free_port() & ~1
        if base + count > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise OSError(f"no {count} consecutive free UDP ports on 127.0.0.1")


class DemoPhone:
    """The caller's RTP end for the demo: listens, and presses keys as RFC 4733 events (each
    key its own event timestamp, so "1001" is four presses, which replayed pcaps cannot do)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.02)
        self.port: int = self.sock.getsockname()[1]
        self.peer: tuple[str, int] | None = None
        self.packets = 0
        self.heard = bytearray()  # PCMU payloads, in arrival order
        self.seq, self.ts, self.ssrc = random.randrange(1 << 16), 0, random.randrange(1 << 32)  # noqa: S311 - RTP ids, not secrets

    def listen(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            if addr[0].startswith("127."):  # loopback only
                self.peer = addr
                self.packets += 1
                if len(data) > 12 and data[1] & 0x7F == 0:
                    self.heard += data[12:]

    def press(self, keys: str) -> None:
        if self.peer is None:
            return
        for key in keys:
            event = "0123456789*#".index(key)
            self.ts += 1600
            for i in range(1, 6):
                self.seq += 1
                self.send(101, struct.pack("!BBH", event, 10, 160 * i), i == 1)
                self.listen(0.02)
            for _ in range(3):
                self.seq += 1
                self.send(101, struct.pack("!BBH", event, 0x80 | 10, 800), False)
            self.listen(0.15)

    def send(self, pt: int, payload: bytes, marker: bool = False) -> None:
        assert self.peer is not None
        head = struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | pt, self.seq & 0xFFFF, self.ts, self.ssrc
        )
        self.sock.sendto(head + payload, self.peer)


def caller_command(
    sipp: str,
    target: str,
    dnis: str,
    ani: str,
    rtp_port: int,
    *,
    port: int,
    ip: str = "127.0.0.1",
    scenario: Path = SCENARIOS / "trunk_ivr_call.xml",
    timeout_seconds: int = 120,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """SIPp as the carrier placing one call from ``ip:port`` to ``dnis`` as ``ani``, its
    audio to and from ``rtp_port`` (where the caller's RTP end listens)."""
    return [
        sipp,
        "-sf",
        str(scenario),
        "-s",
        dnis,
        "-key",
        "rtp_port",
        str(rtp_port),
        "-key",
        "ani",
        ani,
        "-p",
        str(port),
        "-i",
        ip,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        f"{timeout_seconds}s",
        *extra,
        target,
    ]


def _say(text: str) -> None:
    print(f"demo-call: {text}", file=sys.stderr, flush=True)


def demo_call(
    config: Config, option: int, dnis: str, ani: str = "0671234567", keys: str | None = None
) -> int:
    """``keys``: comma-separated groups pressed instead of the option's (the first as the
    greeting starts, each next one 3 s later, when the flow's next prompt plays)."""
    if keys is not None:
        groups = [g.strip() for g in keys.split(",")]
        if not all(groups) or any(c not in "0123456789*#" for g in groups for c in g):
            _say("--keys: groups of 0-9, * and #, separated by commas (e.g. 1,12500#,1)")
            return 2
        option = 0  # no operator's phone: the flow decides where the call goes
    sipp = shutil.which("sipp")
    if sipp is None:
        _say("SIPp is not installed (Debian package sip-tester; scripts/setup.sh installs it)")
        return 2
    trunks_file = Path(config.sip.trunks_file)
    if not trunks_file.exists():
        # the node seeds it at its first start (``ccorch serve`` here, with crm.demo on)
        _say(f"{trunks_file} is missing: start the node here first (ccorch serve)")
        return 2
    trunks = [t for t in load_trunks(trunks_file) if t.host.startswith("127.") and t.match_port]
    if not trunks:
        _say(
            f'{config.sip.trunks_file} has no loopback trunk with match = "host+port" to call from'
        )
        return 2
    trunk = next((t for t in trunks if t.name == "demo-carrier"), trunks[0])
    target = f"{config.sip.host}:{config.sip.port}"
    agent: subprocess.Popen[bytes] | None = None
    browser = False
    if option in OPERATORS:
        ext = OPERATORS[option]
        target_addr = (config.sip.host, config.sip.port)
        browser = any(
            "transport=ws" in c.lower() for c in bindings_of(target_addr, ext, f"agent{ext}")
        )
        if browser:
            _say(f"operator {ext}'s browser phone is registered: answer the call on the desktop")
    if option in OPERATORS and not browser:
        ext = OPERATORS[option]
        phone_port = _free_port()
        _say(f"operator {ext} registers (digest) and will answer on 127.0.0.1:{phone_port}")
        status = register((config.sip.host, config.sip.port), ext, f"agent{ext}", phone_port)
        if status != 200:
            _say(f"the operator's phone could not register: the node answered {status}")
            return 1
        agent = subprocess.Popen(
            [
                sipp,
                "-sf",
                str(SCENARIOS / "agent_hangup.xml"),
                "-d",
                "6000",
                "-p",
                str(phone_port),
                "-i",
                "127.0.0.1",
                "-mp",
                str(_free_media_ports()),
                "-m",
                "1",
                "-nostdin",
                "-timeout",
                "90s",
                "-rtp_echo",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        if agent.poll() is not None:
            _say(f"the operator's phone (SIPp) exited at once with code {agent.returncode}")
            register((config.sip.host, config.sip.port), ext, f"agent{ext}", phone_port, 0)
            return 1
    if keys is not None:
        pressed = [(2.0 if i == 0 else 3.0, g) for i, g in enumerate(keys.split(","))]
    elif option in OPERATORS:
        pressed = [(2.0, str(option))]
    else:
        pressed = [(2.0, "3"), (3.0, "1001#"), (3.5, "1234#")]
    _say(f"calling {dnis} at {target} as {ani} from trunk {trunk.name} ({trunk.host}:{trunk.port})")
    phone = DemoPhone()
    call = subprocess.Popen(
        caller_command(sipp, target, dnis, ani, phone.port, port=trunk.port, ip=trunk.host),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for pause, k in pressed:
            phone.listen(pause)
            _say(f"pressing {k}")
            phone.press(k)
        deadline = time.monotonic() + 120
        while call.poll() is None and time.monotonic() < deadline:
            phone.listen(0.5)
    finally:
        phone.sock.close()
        if call.poll() is None:
            call.kill()
    code = call.wait()
    _say(f"heard {phone.packets} RTP packets ({phone.packets * 20 / 1000:.1f} s of audio)")
    if agent is not None:
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()
        # the phone is gone: its binding goes too, so the next demo call does not ring it
        register((config.sip.host, config.sip.port), ext, f"agent{ext}", phone_port, 0)
    if code == 0:
        _say(
            f"the call ended normally; see http://{config.http.host}:{config.http.port}/metrics (cc_calls_*, cc_queue_*, cc_agents)"
        )
        return 0
    _say(f"the call failed (SIPp exit {code}); the node's log says why")
    return 1
