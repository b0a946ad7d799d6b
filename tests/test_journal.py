"""The journal of calls that are up (``ccorch.calls.journal``), without a node: what a next
start reads back after saves, drops, segment rotation, a crash during recovery, a torn line
and a file of the version that kept one file per call."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ccorch.calls.cdr import Cdr, json_ready
from ccorch.calls.journal import Journal, SavedDialog

T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)


def _cdr(ref: int, agent: str | None = None) -> Cdr:
    return Cdr(
        call_ref=ref, sip_call_id=f"call-{ref}", ani="0671234567", dnis="100", origin="trunk",
        flow=None, queue="general" if agent else None, agent=agent, customer_id=None,
        outcome="up", status=200, arrived_at=T0 + dt.timedelta(seconds=ref), ivr_ended_at=None,
        queued_at=None, offered_at=None, answered_at=T0, ended_at=T0, waited_ms=None,
        talk_seconds=0.0,
    )  # fmt: skip


def _dialog(ref: int) -> SavedDialog:
    return SavedDialog(
        call_id=f"call-{ref}", local_tag="ours", remote_tag="theirs",
        local_uri="sip:ccorch@127.0.0.1", remote_uri="sip:0671234567@127.0.0.1",
        remote_target="sip:trunk@127.0.0.1:5070", transport="UDP", host="127.0.0.1",
        port=5070, local_cseq=1,
    )  # fmt: skip


def _left(folder: Path) -> dict[int, str | None]:
    """call_ref -> the agent the journal last had, for what a next start would find."""
    return {
        i.entry.cdr.call_ref: i.entry.cdr.agent
        for i in Journal(folder).left_over()
        if i.entry is not None
    }


def test_a_next_start_finds_each_call_still_up_as_last_saved_and_none_dropped(
    tmp_path: Path,
) -> None:
    j = Journal(tmp_path)
    assert list(tmp_path.glob("journal-*")) == []  # nothing written, no segment
    j.save(_cdr(1), [_dialog(1)])
    j.save(_cdr(2), [])
    j.save(_cdr(1, agent="7001"), [_dialog(1), _dialog(1)])  # the operator answered
    j.drop(2, _cdr(2).arrived_at)
    j.drop(3, _cdr(3).arrived_at)  # never saved: nothing written for it
    [item] = Journal(tmp_path).left_over()
    assert item.entry is not None
    assert (item.entry.cdr.call_ref, item.entry.cdr.agent) == (1, "7001")
    assert len(item.entry.dialogs) == 2 and item.entry.dialogs[0].remote_tag == "theirs"
    assert abs((item.saved_at - dt.datetime.now(dt.UTC)).total_seconds()) < 60
    assert len((tmp_path / "journal-00000001.log").read_bytes().splitlines()) == 4


def test_a_full_segment_is_replaced_by_one_holding_only_the_calls_up(tmp_path: Path) -> None:
    j = Journal(tmp_path, segment_bytes=8 * 1024)
    for ref in range(1, 201):
        j.save(_cdr(ref), [_dialog(ref)])
        if ref % 10:  # one call in ten stays up
            j.drop(ref, _cdr(ref).arrived_at)
    segments = sorted(tmp_path.glob("journal-*.log"))
    assert len(segments) == 1 and segments[0].name != "journal-00000001.log"
    assert segments[0].stat().st_size <= 8 * 1024 + 20 * 1000
    assert _left(tmp_path) == {ref: None for ref in range(10, 201, 10)}


def test_a_crash_during_recovery_never_closes_a_call_twice(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    for ref in (1, 2, 3):
        j.save(_cdr(ref), [_dialog(ref)])
    # the next start closes call 1, then dies before the others
    second = Journal(tmp_path)
    items = {i.entry.cdr.call_ref: i for i in second.left_over() if i.entry is not None}
    second.recovered(items[1])
    assert _left(tmp_path) == {2: None, 3: None}
    # the third start closes the rest: the dead runs' segments go
    third = Journal(tmp_path)
    rest = third.left_over()
    for item in rest:
        third.recovered(item)
    third.recovered_all()
    assert _left(tmp_path) == {}
    assert [p.name for p in tmp_path.glob("journal-*.log")] == ["journal-00000003.log"]


def test_a_segment_replaced_during_recovery_keeps_the_calls_already_closed(
    tmp_path: Path,
) -> None:
    j = Journal(tmp_path)
    for ref in (1, 2):
        j.save(_cdr(ref), [_dialog(ref)])
    second = Journal(tmp_path, segment_bytes=2 * 1024)
    items = {i.entry.cdr.call_ref: i for i in second.left_over() if i.entry is not None}
    second.recovered(items[1])
    for ref in range(100, 110):  # new calls fill this run's segment: it is replaced
        second.save(_cdr(ref), [_dialog(ref)])
    # the node dies before closing call 2: call 1 stays closed
    assert set(_left(tmp_path)) == {2, *range(100, 110)}


def test_a_torn_line_is_reported_and_its_segment_kept_for_a_person(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.save(_cdr(1), [])
    j.save(_cdr(2), [])
    with (tmp_path / "journal-00000001.log").open("ab") as f:
        f.write(b'{"key": "20261207T090003000000-3", "saved_at": "2026-12-07T09:')  # torn
    nxt = Journal(tmp_path)
    items = nxt.left_over()
    assert sorted(i.entry.cdr.call_ref for i in items if i.entry is not None) == [1, 2]
    [bad] = [i for i in items if i.entry is None]
    assert bad.key == "journal-00000001.log:3"
    for item in items:
        nxt.recovered(item)
    nxt.recovered_all()
    assert (tmp_path / "journal-00000001.unreadable").exists()
    assert _left(tmp_path) == {}


def test_a_file_per_call_of_the_previous_version_is_read_and_removed(tmp_path: Path) -> None:
    old = tmp_path / "20261207T090001000000-1.json"
    old.write_text(json.dumps({"cdr": json_ready(_cdr(1, "7002")), "dialogs": [vars(_dialog(1))]}))
    broken = tmp_path / "20261207T090002000000-2.json"
    broken.write_text("{")
    j = Journal(tmp_path)
    items = {i.key: i for i in j.left_over()}
    assert items[old.name].entry is not None and items[old.name].entry.cdr.agent == "7002"
    assert items[broken.name].entry is None
    for item in items.values():
        j.recovered(item)
    j.recovered_all()
    assert not old.exists() and (tmp_path / "20261207T090002000000-2.unreadable").exists()
