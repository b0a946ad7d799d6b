"""Configuration: defaults, file, environment, and errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccorch.config import load_config, with_overrides
from ccorch.errors import ConfigError


def test_defaults_are_what_a_user_expects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./ccorch.toml here
    c = load_config(env={})
    assert (c.http.host, c.http.port) == ("127.0.0.1", 8000)
    assert c.database.url is None and c.database.data_dir == "var/pgdata"
    assert c.server.shutdown_grace_seconds == 15.0
    assert (c.media.bind_ip, c.media.port_min, c.media.port_max, c.media.shards) == (
        "127.0.0.1",
        10000,
        20000,
        1,
    )
    assert c.source == "defaults"


def test_file_then_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[http]\nport = 9000\nhost = "0.0.0.0"\n[log]\nlevel = "WARNING"\n[server]\nshutdown_grace_seconds = 3\n'
    )
    c = load_config(f, env={"CCORCH_HTTP_PORT": "9100", "DATABASE_URL": "postgresql://u@h/db"})
    assert c.http.port == 9100  # environment wins over the file
    assert c.http.host == "0.0.0.0"
    assert c.log.level == "warning"
    assert c.server.shutdown_grace_seconds == 3.0
    assert c.database.url == "postgresql://u@h/db"
    assert load_config(env={"CCORCH_CONFIG": str(f)}).http.port == 9000


@pytest.mark.parametrize(
    ("toml", "env", "key", "source"),
    [
        ("[http]\nport = 70000\n", {}, "http.port = 70000", "c.toml"),
        ('[http]\nport = "8000"\n', {}, "http.port = '8000'", "c.toml"),
        ("[http]\nprot = 8000\n", {}, "http.prot", "c.toml"),
        ("[htpp]\nport = 8000\n", {}, "htpp", "c.toml"),
        ('[http]\nhost = "not a host!"\n', {}, "http.host", "c.toml"),
        ("[database]\npool_min = 5\npool_max = 2\n", {}, "database.pool_min = 5", "c.toml"),
        ("[media]\nport_min = 20000\nport_max = 20001\n", {}, "media.port_min = 20000", "c.toml"),
        ('[media]\nbind_ip = "localhost"\n', {}, "media.bind_ip = 'localhost'", "c.toml"),
        ("", {"CCORCH_MEDIA_SHARDS": "0"}, "media.shards = '0'", "environment CCORCH_MEDIA_SHARDS"),
        (
            "",
            {"CCORCH_HTTP_PORT": "eighty"},
            "http.port = 'eighty'",
            "environment CCORCH_HTTP_PORT",
        ),
        ("", {"CCORCH_LOG_LEVEL": "loud"}, "log.level = 'loud'", "environment CCORCH_LOG_LEVEL"),
        (
            "",
            {"CCORCH_DATABASE_MIGRATE_ON_START": "maybe"},
            "database.migrate_on_start",
            "environment",
        ),
        ("", {"CCORCH_HTTP_PROT": "1"}, "CCORCH_HTTP_PROT", "environment CCORCH_HTTP_PROT"),
        (
            "",
            {"DATABASE_URL": "mysql://x"},
            "database.url = 'mysql://x'",
            "environment DATABASE_URL",
        ),
        ("[http\n", {}, "config file", "c.toml"),
    ],
)
def test_bad_value_names_key_value_and_source(
    tmp_path: Path, toml: str, env: dict[str, str], key: str, source: str
) -> None:
    f = tmp_path / "c.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(f, env=env)
    message = str(err.value)
    assert key in message
    assert source in message
    assert "expected" in message


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="an existing TOML file"):
        load_config(tmp_path / "nope.toml", env={})


def test_command_line_overrides_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    c = with_overrides(load_config(env={}), port=8443, host="::1")
    assert (c.http.host, c.http.port) == ("::1", 8443)
    with pytest.raises(ConfigError, match=r"http\.port = 0 \(from command line"):
        with_overrides(c, port=0)
