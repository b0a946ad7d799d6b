"""Calls per trunk and per phone address: up at once and started per second (sans-IO)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccorch.errors import ConfigError
from ccorch.sip.call_limits import CallLimits, Limit
from ccorch.sip.trunks import load_trunks


def test_calls_up_at_once_are_capped_and_a_call_that_ends_makes_room() -> None:
    limits = CallLimits()
    two = Limit(max_calls=2)
    assert limits.admit(0.0, "trunk:a", two) is None
    assert limits.admit(0.0, "trunk:a", two) is None
    assert limits.admit(0.0, "trunk:a", two) == "its limit of 2 calls up at once"
    assert limits.admit(0.0, "trunk:b", two) is None  # another trunk counts apart
    assert limits.room(0.0, "trunk:a", two) == 0
    limits.release("trunk:a")
    assert limits.room(0.0, "trunk:a", two) == 1
    assert limits.admit(0.0, "trunk:a", two) is None
    assert limits.up("trunk:a") == 2


def test_calls_per_second_allow_a_burst_of_twice_the_rate_then_the_rate() -> None:
    limits = CallLimits()
    five = Limit(per_second=5)
    admitted = [limits.admit(0.0, "source:10.0.0.1", five) for _ in range(12)]
    assert admitted.count(None) == 10  # the burst
    assert admitted[-1] == "over its 5 calls per second"
    assert limits.room(0.0, "source:10.0.0.1", five) == 0
    # a second later, five more and no more
    later = [limits.admit(1.0, "source:10.0.0.1", five) for _ in range(7)]
    assert later.count(None) == 5
    # a refused call is not counted as up
    assert limits.up("source:10.0.0.1") == 15


def test_a_refused_call_takes_no_token_and_no_limit_means_no_limit() -> None:
    limits = CallLimits()
    both = Limit(max_calls=1, per_second=1)
    assert limits.admit(0.0, "k", both) is None
    assert (
        limits.admit(0.0, "k", both) == "its limit of 1 call up at once"
    )  # refused on the count: no token spent
    limits.release("k")
    assert limits.admit(0.0, "k", both) is None  # the burst's second token was still there
    assert limits.room(0.0, "free", Limit()) is None
    assert all(limits.admit(0.0, "free", Limit()) is None for _ in range(10_000))
    for _ in range(10_000):
        limits.release("free")
    assert limits.up("free") == 0


def test_a_trunks_limits_are_read_from_its_file_and_a_bad_one_names_its_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trunks.toml"
    path.write_text(
        '[[trunk]]\nname = "carrier"\nhost = "127.0.0.1"\nmax_calls = 30\n'
        "max_calls_per_second = 2.5\n"
    )
    (trunk,) = load_trunks(path)
    assert trunk.limit == Limit(max_calls=30, per_second=2.5)
    assert trunk.limit_key == "trunk:carrier"
    path.write_text('[[trunk]]\nname = "carrier"\nhost = "127.0.0.1"\nmax_calls = -1\n')
    with pytest.raises(ConfigError, match=r"trunk\[0\]\.max_calls"):
        load_trunks(path)
