"""SIP over TLS against real peers: baresip (Debian) as the carrier calling in over TLS and
as an operator's phone registered over TLS; the node's certificate is checked by both."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.certs import Leaf, make_ca, make_leaf
from tests.conftest import Node, start_node
from tests.sipp import free_udp_port, metrics, wait_for
from tests.test_sip_phones import _tone

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed"),
]


class Baresip:
    """One baresip with its own config folder; SIP on ``ip:port`` (TLS on port + 1)."""

    def __init__(self, folder: Path, ip: str, account: str, ca: Path, commands: list[str]) -> None:
        folder.mkdir()
        _tone(folder / "tone.wav")
        self.port = free_udp_port(ip)
        (folder / "config").write_text(
            f"""poll_method epoll
sip_listen {ip}:{self.port}
sip_cafile {ca}
audio_player aubridge,nil
audio_source aufile,{folder / "tone.wav"}
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module srtp.so
module account.so
module menu.so
"""
        )
        (folder / "accounts").write_text(account + "\n")
        self.log_path = folder / "baresip.log"
        self.log = self.log_path.open("w")
        args = ["baresip", "-f", str(folder), "-t", "40"]
        for c in commands:
            args += ["-e", c]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _tls_node(
    cwd: Path, db: str, ca: Path, leaf: Leaf, carrier_tls_port: int, srtp: str = "off"
) -> tuple[Node, int]:
    sip_port, tls_port = free_udp_port(), free_udp_port()
    (cwd / "trunks.toml").write_text(
        f'[[trunk]]\nname = "carrier-tls"\nhost = "127.0.0.1"\nport = {carrier_tls_port}\n'
        f'transport = "tls"\noptions_interval = 0\nsrtp = "{srtp}"\n'
    )
    rtp = 20000 + (sip_port % 200) * 100
    (cwd / "ccorch.toml").write_text(
        f'[sip]\nport = {sip_port}\nt1_ms = 50\ntrunks_file = "{cwd / "trunks.toml"}"\n'
        'auth_algorithms = "MD5"\n'  # baresip 1.0 knows MD5 only
        f'tls_port = {tls_port}\ntls_cert = "{leaf.cert}"\ntls_key = "{leaf.key}"\n'
        f'tls_ca = "{ca}"\nphones_srtp = "{"required" if srtp == "required" else "off"}"\n'
        f"[media]\nport_min = {rtp}\nport_max = {rtp + 99}\n"
    )
    node = start_node(cwd, {"DATABASE_URL": db, "CCORCH_CRM_ADMIN_PASSWORD": "x" * 12})
    return node, tls_port


def test_a_carrier_calls_over_tls_to_an_operator_registered_over_tls(
    fresh_db: str, tmp_path: Path
) -> None:
    m, _, _ = _tls_call(fresh_db, tmp_path, srtp=False)
    assert m.get('cc_media_srtp_rejected_total{kind="rtp"}', 0) == 0


def test_srtp_both_ways_between_a_tls_carrier_and_a_tls_phone(
    fresh_db: str, tmp_path: Path
) -> None:
    """The carrier trunk requires SRTP and offers RTP/SAVP with an SDES key; the phone is
    offered RTP/SAVP too: each leg is encrypted with its own keys, and the audio still
    crosses the bridge both ways (each side's packets authenticate and decrypt)."""
    # both baresips run mediaenc=srtp-mand: they take and make nothing but SRTP
    m, _, _ = _tls_call(fresh_db, tmp_path, srtp=True)
    # not one RTP packet failed to authenticate (baresip sends its RTCP keep-alive and BYE
    # in clear text: those are refused, as any RTCP that does not authenticate is)
    assert m.get('cc_media_srtp_rejected_total{kind="rtp"}', -1) == 0


def test_a_plain_rtp_offer_to_an_srtp_only_trunk_is_refused_with_488(
    fresh_db: str, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    ca = make_ca(pki)
    carrier_port = free_udp_port()
    node, tls_port = _tls_node(
        tmp_path, fresh_db, ca, make_leaf(pki, "node"), carrier_port + 1, srtp="required"
    )
    carrier = Baresip(
        tmp_path / "carrier",
        "127.0.0.1",
        "<sip:carrier@127.0.0.1;transport=tls>;regint=0",  # no mediaenc: plain RTP
        ca,
        [f"/dial sip:7003@127.0.0.1:{tls_port};transport=tls"],
    )
    try:
        assert wait_for(lambda: "488" in carrier.text(), 15), carrier.text()
        assert "SRTP required" in carrier.text()
        assert metrics(node.base).get("cc_calls_answered_total", 0) == 0
    finally:
        carrier.stop()
        node.kill()


def _tls_call(
    fresh_db: str, tmp_path: Path, *, srtp: bool
) -> tuple[dict[str, float], Baresip, Baresip]:
    pki = tmp_path / "pki"
    ca = make_ca(pki)
    node_leaf = make_leaf(pki, "node")
    carrier_port = free_udp_port()
    enc = ";mediaenc=srtp-mand" if srtp else ""
    node, tls_port = _tls_node(
        tmp_path, fresh_db, ca, node_leaf, carrier_port + 1, "required" if srtp else "off"
    )
    peers: list[Baresip] = []
    try:
        phone = Baresip(
            tmp_path / "phone",
            "127.0.0.2",
            f"<sip:7003@127.0.0.1:{tls_port};transport=tls>;auth_pass=agent7003;"
            f"answermode=auto;regint=300{enc}",
            ca,
            [],
        )
        peers.append(phone)
        assert wait_for(lambda: metrics(node.base).get("cc_sip_registered_contacts") == 1, 15), (
            phone.text()
        )
        carrier = Baresip(
            tmp_path / "carrier",
            "127.0.0.1",
            f"<sip:carrier@127.0.0.1;transport=tls>;regint=0{enc}",
            ca,
            [f"/dial sip:7003@127.0.0.1:{tls_port};transport=tls"],
        )
        peers.append(carrier)
        assert wait_for(lambda: metrics(node.base).get("cc_calls_answered_total") == 1, 20), (
            carrier.text() + phone.text()
        )
        wait_for(lambda: False, 3)  # talk for a while
        carrier.stop()  # hangs up
        m: dict[str, float] = {}

        def ended() -> bool:
            nonlocal m
            m = metrics(node.base)
            return m.get("cc_calls_active", -1) == 0 and m.get("cc_media_legs", -1) == 0

        assert wait_for(ended, 15), m
    finally:
        for p in peers:
            p.stop()
        node.kill()
    # audio both ways: each side's RTP reached the node through the bridge
    assert m['cc_media_packets_received_total{side="caller"}'] > 100, m
    assert m['cc_media_packets_received_total{side="operator"}'] > 100, m
    assert "Call established" in phone.text() and "Call established" in carrier.text()
    return m, phone, carrier
