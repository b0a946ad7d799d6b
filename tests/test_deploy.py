"""The service unit in deploy/: systemd accepts it, and it keeps the node in its box."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "ccorch.service"


def _settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_the_unit_runs_the_node_as_its_own_user_in_a_read_only_system() -> None:
    s = _settings()
    assert s["DynamicUser"] == ["yes"] and s["StateDirectory"] == ["ccorch"]
    assert s["ProtectSystem"] == ["strict"] and s["ReadWritePaths"] == ["/var/lib/ccorch"]
    assert s["WorkingDirectory"] == ["/var/lib/ccorch"]  # var/ and flows/ land there
    assert s["NoNewPrivileges"] == ["yes"] and s["KillSignal"] == ["SIGTERM"]
    assert "ccorch" in s["ExecStart"][0] and s["ExecStart"][0].endswith(" serve")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # the same unit with ExecStart pointing at this checkout's command (/opt is not here)
    unit = tmp_path / "ccorch.service"
    unit.write_text(
        UNIT.read_text().replace(
            "/opt/ccorch/.venv/bin/ccorch", str(REPO / ".venv" / "bin" / "ccorch")
        )
    )
    r = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "ccorch.service" not in r.stderr, r.stderr
