"""SIPVicious (Debian's sipvicious) against a running node, as a scanner on the Internet
would: it finds no extension, its password cracking is banned long before it reaches the
right password, and a real phone on another address goes on working meanwhile."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Node
from tests.sipp import free_udp_port, metrics, register_phone
from tests.test_sip_phones import _node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("svwar") is None, reason="sipvicious not installed"),
]


def _sv(tool: str, *args: str, timeout: float = 90) -> str:
    # its own source port: left alone, SIPVicious binds 5060, which the README's tests need
    # for the node's default (they failed "5060 is not free" when the two modules overlapped)
    local = ["-P", str(free_udp_port())]
    r = subprocess.run(
        [tool, *local, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    return r.stdout + r.stderr


def test_sipvicious_finds_nothing_and_is_banned_while_a_phone_keeps_working(
    fresh_db: str, tmp_path: Path
) -> None:
    # MD5 first: the dialect svcrack speaks, so its guesses are really checked
    node: Node
    node, sip_port, _ = _node(tmp_path, fresh_db, algorithms="MD5,SHA-256")
    try:
        port = str(sip_port)
        # extension enumeration: every extension, real or not, gets the same 401
        out = _sv("svwar", "-e7000-7010", "-m", "REGISTER", "--force", "-b", "127.0.0.1",
                  "-p", port, "127.0.0.1")  # fmt: skip
        assert "found nothing" in out, out
        assert "| 7001" not in out and "| 7003" not in out, out
        # password cracking: the right password is the 50th guess
        words = tmp_path / "dictionary.txt"
        words.write_text("".join(f"guess{i}\n" for i in range(49)) + "agent7001\n")
        out = _sv("svcrack", "-u", "7001", "-d", str(words), "-b", "127.0.0.1",
                  "-p", port, "127.0.0.1")  # fmt: skip
        assert "agent7001" not in out and "found nothing" in out, out
        m = metrics(node.base)
        assert m["cc_sip_bans_total"] >= 1 and m["cc_sip_auth_failures_total"] <= 10, m
        # a phone on another loopback address registers and is reachable as before
        register_phone(f"127.0.0.1:{sip_port}", tmp_path, "7003", source_ip="127.0.0.2")
        assert metrics(node.base)["cc_sip_registered_contacts"] == 1
    finally:
        node.kill()


def test_svmap_sees_a_sip_server_but_no_more(fresh_db: str, tmp_path: Path) -> None:
    node, sip_port, _ = _node(tmp_path, fresh_db, algorithms="SHA-256,MD5")
    try:
        out = _sv("svmap", "-b", "127.0.0.1", "-p", str(sip_port), "127.0.0.1")
        assert "ccorch" in out, out  # our Server header, and nothing about users
    finally:
        node.kill()
