"""The README's demo, as a newcomer runs it: the node with its default configuration (HTTP
8000, SIP 5060, the embedded PostgreSQL, the demo tenant), then `ccorch demo-call` and
`ccorch demo-call --option 1` exactly as written. The package is the built wheel, unpacked
and put first on the path, in an empty working folder: nothing comes from the checkout."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.sipp import metrics, wait_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The wheel's contents on PYTHONPATH (ahead of the editable checkout)."""
    out = tmp_path_factory.mktemp("wheel")
    maturin = Path(sys.executable).parent / "maturin"
    subprocess.run(
        [str(maturin), "build", "--profile", "dev", "-q", "-o", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)},
    )
    (wheel,) = out.glob("ccorch-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": str(site),
        "HOME": os.environ.get("HOME", "/root"),
    }
    where = subprocess.run(
        [sys.executable, "-c", "import ccorch; print(ccorch.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=out,
    ).stdout
    assert where.startswith(str(site)), where
    yield env


@contextlib.contextmanager
def _default_node(command: list[str], cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """`ccorch serve` with the default configuration in ``cwd``, serving, then stopped."""
    with (cwd / "node.log").open("w") as log:
        node = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert wait_for(lambda: _healthy(node, cwd), 90), (cwd / "node.log").read_text()
        yield
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()


def test_the_readme_demo_runs_from_the_wheel_with_the_default_configuration(
    installed: dict[str, str], tmp_path: Path
) -> None:
    with _default_node([sys.executable, "-m", "ccorch", "serve"], tmp_path, installed):
        # the demo's working files were put in place at the first start
        assert (tmp_path / "flows" / "abc-internet-ru.yaml").is_file()
        assert (tmp_path / "sip" / "trunks.toml").is_file()
        time.sleep(1.5)  # the flows are scanned once a second
        # the operator's call twice: a newcomer runs it again, and the second once rang the
        # first run's phone, gone since (the call waited for it and timed out)
        for args, outcome, agent in (
            ([], "ivr-flow", None),
            (["--option", "1"], "agent-hangup", "7001"),
            (["--option", "1"], "agent-hangup", "7001"),
        ):
            r = subprocess.run(
                [sys.executable, "-m", "ccorch", "demo-call", *args],
                cwd=tmp_path,
                env=installed,
                capture_output=True,
                text=True,
                timeout=150,
            )
            assert r.returncode == 0, r.stderr
            assert "the call ended normally" in r.stderr
            want = (outcome, agent)
            got = wait_for(lambda w=want: _last_cdr(tmp_path) == w, 5)
            assert got, (_last_cdr(tmp_path), r.stderr)
        m = metrics("http://127.0.0.1:8000")
        assert m.get('cc_calls_ended_total{reason="agent-hangup"}', 0) >= 1


def _last_cdr(cwd: Path) -> tuple[object, ...] | None:
    pgdata = (cwd / "var" / "pgdata").resolve()  # the embedded server's socket folder
    with psycopg.connect(f"postgresql://postgres@/postgres?host={pgdata}") as conn:
        return conn.execute("SELECT outcome, agent FROM cdrs ORDER BY id DESC LIMIT 1").fetchone()


def _sh_blocks() -> list[str]:
    """The README's ```sh blocks but the first (the set-up commands themselves); the long
    fuzzing runs are ```console blocks, run on demand (the suite fuzzes briefly itself)."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    assert blocks[0].startswith("scripts/run.sh")
    return blocks[1:]


def test_every_readme_command_works_as_written_with_the_default_configuration(
    tmp_path: Path,
) -> None:
    """A node as `scripts/run.sh` starts it (the checkout's .venv, defaults: HTTP 8000, SIP
    5060, the embedded PostgreSQL, the demo), then each shell block of the README, verbatim,
    in bash with -e: every command exits 0, and no API answer is an error."""
    env = _like_a_checkout(tmp_path)
    with _default_node([str(REPO / ".venv" / "bin" / "ccorch"), "serve"], tmp_path, env):
        time.sleep(1.5)  # the flows are scanned once a second
        for block in _sh_blocks():
            r = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert r.returncode == 0, (block, r.stdout[-2000:], r.stderr[-2000:])
            for line in r.stdout.splitlines():
                if line.startswith("{"):  # an API answer
                    assert '"error"' not in line, (block, line)


def _like_a_checkout(folder: Path) -> dict[str, str]:
    """``folder`` as `scripts/run.sh` leaves a checkout (its .venv and SIPp scenarios), and
    the environment a user's shell has there."""
    (folder / ".venv").symlink_to(REPO / ".venv")
    (folder / "sip").mkdir()
    (folder / "sip" / "sipp").symlink_to(REPO / "sip" / "sipp")
    return {
        "PATH": f"{REPO / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
    }


def _healthy(node: subprocess.Popen[bytes], cwd: Path) -> bool:
    assert node.poll() is None, (cwd / "node.log").read_text()
    try:
        with urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_the_readme_browser_phone_demo_answers_demo_call_in_the_desktop(tmp_path: Path) -> None:
    """The README's browser-phone demo: the node as `scripts/run.sh` starts it, op7001 signs
    in to the desktop in Chromium (fake microphone), starts the shift, and
    `ccorch demo-call --option 1` rings the browser, which answers; audio flows to the page
    (DTLS-SRTP); the operator hangs up in the desktop and the command reports a normal end."""
    from playwright.sync_api import expect, sync_playwright

    from tests.chromium import CHROMIUM
    from tests.test_browser_phone import KEEP_PEER_CONNECTIONS, STATS, fake_media_flags, tone_wav

    env = _like_a_checkout(tmp_path)
    mic = tone_wav(tmp_path / "mic.wav", 1000, 5.0)
    flags = fake_media_flags(mic)
    with (
        _default_node([str(REPO / ".venv" / "bin" / "ccorch"), "serve"], tmp_path, env),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        context = browser.new_context(locale="en")
        context.set_default_timeout(15_000)
        context.add_init_script(KEEP_PEER_CONNECTIONS)
        page = context.new_page()
        page.goto("http://127.0.0.1:8000/")
        page.fill("input[name=login]", "op7001")
        page.fill("input[name=password]", "agent7001")
        page.click("button[type=submit]")
        page.click("[data-testid=start-shift]")
        expect(page.get_by_test_id("phone-status")).to_have_attribute("data-status", "registered")
        expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "ready")
        demo = subprocess.Popen(
            [str(tmp_path / ".venv" / "bin" / "ccorch"), "demo-call", "--option", "1"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            expect(page.get_by_test_id("phone-ringing")).to_be_visible(timeout=30_000)
            page.click("[data-testid=answer]")
            expect(page.get_by_test_id("call-state")).to_have_attribute("data-state", "answered")
            page.wait_for_timeout(3000)
            stats = [json.loads(x) for x in page.evaluate(STATS)]
            inbound = next(x for x in stats if x["type"] == "inbound-rtp")
            assert inbound["packetsReceived"] > 50, inbound
            page.click("[data-testid=hangup]")
            out, _ = demo.communicate(timeout=60)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.communicate()
            browser.close()
    assert demo.returncode == 0, out
    assert "browser phone is registered" in out and "ended normally" in out, out
