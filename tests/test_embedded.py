"""The README's first command's default: no DATABASE_URL, so ccorch runs its own PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import Node, start_node

pytestmark = pytest.mark.slow


def test_embedded_database_starts_persists_and_stops_with_ccorch(
    tmp_path: Path, nodes: list[Node]
) -> None:
    node = start_node(tmp_path, {})
    nodes.append(node)
    with urllib.request.urlopen(node.base + "/healthz", timeout=10) as r:
        assert r.status == 200
        assert json.loads(r.read())["database"] == "up"
    pgdata = tmp_path / "var" / "pgdata"
    assert (pgdata / "PG_VERSION").is_file()
    postmaster_pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    assert psutil.pid_exists(postmaster_pid)
    assert psutil.Process(postmaster_pid).username() != "root"  # never the database as root

    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=30) == 0
    # Stopped cleanly: the server is gone and left no pid file behind.
    assert (
        not psutil.pid_exists(postmaster_pid)
        or psutil.Process(postmaster_pid).status() == psutil.STATUS_ZOMBIE
    )
    assert not (pgdata / "postmaster.pid").exists()

    # A second start finds the same, already migrated data.
    again = start_node(tmp_path, {})
    nodes.append(again)
    with urllib.request.urlopen(again.base + "/healthz", timeout=10) as r:
        assert json.loads(r.read())["schema_version"] >= 1
    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(timeout=30) == 0
    assert not any("migration applied" in line for line in again.log_lines())


def test_after_a_kill_9_the_next_stop_still_stops_the_embedded_database(
    tmp_path: Path, nodes: list[Node]
) -> None:
    """A node killed with SIGKILL leaves its id in the server's list of users; the next
    node takes it out at start, and its SIGTERM stops the server it attached to."""
    crashed = start_node(tmp_path, {})
    nodes.append(crashed)
    pgdata = tmp_path / "var" / "pgdata"
    postmaster_pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    crashed.proc.kill()
    crashed.proc.wait(timeout=10)
    handles = json.loads((pgdata / ".handle_pids.json").read_text())
    assert crashed.proc.pid in handles  # what the crash leaves behind
    assert psutil.pid_exists(postmaster_pid)  # the server outlives the killed node

    again = start_node(tmp_path, {})
    nodes.append(again)
    with urllib.request.urlopen(again.base + "/healthz", timeout=10) as r:
        assert json.loads(r.read())["database"] == "up"
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == [again.proc.pid]
    again.proc.send_signal(signal.SIGTERM)
    assert again.proc.wait(timeout=30) == 0
    assert (
        not psutil.pid_exists(postmaster_pid)
        or psutil.Process(postmaster_pid).status() == psutil.STATUS_ZOMBIE
    )
    assert not (pgdata / "postmaster.pid").exists()


def test_another_embedded_server_on_the_machine_does_not_hold_up_a_start_or_stop(
    tmp_path: Path, nodes: list[Node]
) -> None:
    """pgserver's own lock is one for every server of the user: while another process held
    it (another instance running initdb, say), a node's start and stop waited. With the lock
    beside the data folder, a node starts and stops while the user-wide one stays taken."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_USER_WIDE_LOCK],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        node = start_node(tmp_path, {})
        nodes.append(node)
        with urllib.request.urlopen(node.base + "/healthz", timeout=10) as r:
            assert json.loads(r.read())["database"] == "up"
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=30) == 0
        assert not (tmp_path / "var" / "pgdata" / "postmaster.pid").exists()
        assert holder.poll() is None  # the other process held the lock all along
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


_HOLD_THE_USER_WIDE_LOCK = """
import time, warnings
warnings.simplefilter("ignore")
import pgserver
with pgserver.postgres_server.PostgresServer._lock:
    print("holding", flush=True)
    time.sleep(600)
"""
