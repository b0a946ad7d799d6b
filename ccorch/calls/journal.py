"""What a node needs to close its calls after it died: the state of every call that is up.

While a call is up, the journal holds its CDR so far (every moment of its path, who it
reached, its recording) and the SIP dialog state of each confirmed leg; the node writes it
again when the call's path moves (answered by the IVR, by an operator) and lets it go once
the call's CDR is committed. ``<var>/calls/alive`` is touched every second: after a crash,
its time is the last moment the node is known to have carried the calls.

The journal is an append-only log of JSON lines in ``<var>/calls/journal-<n>.log``: a save
is one ``write`` of the call's whole state, a drop one line naming the call. A segment past
``SEGMENT_BYTES`` is replaced by a new one holding only the calls still up (written before
the old one is removed, so a crash between the two loses nothing). It replaced a file per
call written and renamed at each save and removed at the end: ~350 µs of the node's CPU
per call in file-system metadata work against ~7 µs for the appends (measured on this
project's box), at hundreds of calls per second.

At the next start (:mod:`ccorch.calls.recovery`) each call left over becomes a closed CDR
(outcome ``node-failure``, ended at the last sign of life), its recording is finalized and
linked, and each far end is sent BYE. Each one recovered is dropped in the new run's
segment as it goes, so a crash during recovery never closes a call twice; the previous
runs' segments are removed when recovery is done (one with an unreadable line is kept as
``*.unreadable`` for a person).

Lines are written but not fsynced: they survive the process being killed, which is what
they are for; a power cut of the whole machine may lose the last second's changes (and the
database's own durability then matters more).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccorch.calls.cdr import Cdr, from_json, json_ready
from ccorch.sip.dialog import Dialog
from ccorch.sip.message import Uri
from ccorch.sip.transaction import Addr

ALIVE = "alive"


@dataclass
class SavedDialog:
    """A confirmed leg's dialog, enough to send it BYE (RFC 3261 §12.2.1.1)."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    transport: str
    host: str
    port: int
    local_cseq: int
    route_set: list[str] = field(default_factory=list)
    via_host: str = ""
    side: str = "a"  # a: the caller's leg; b: the operator's (or the transfer target's)
    target: str | None = None  # the extension or number of a b leg

    @classmethod
    def of(cls, d: Dialog, side: str, target: str | None) -> SavedDialog:
        return cls(
            call_id=d.call_id,
            local_tag=d.local_tag,
            remote_tag=d.remote_tag,
            local_uri=d.local_uri,
            remote_uri=d.remote_uri,
            remote_target=str(d.remote_target),
            transport=d.dest.transport,
            host=d.dest.host,
            port=d.dest.port,
            local_cseq=d.local_cseq,
            route_set=list(d.route_set),
            via_host=d.via_host,
            side=side,
            target=target,
        )

    def dialog(self, cseq_margin: int = 100) -> Dialog:
        """The dialog again. Its CSeq jumps ahead: requests sent after the last save (a
        session refresh) must not make the BYE's CSeq look old to the far end."""
        return Dialog(
            call_id=self.call_id,
            local_tag=self.local_tag,
            remote_tag=self.remote_tag,
            local_uri=self.local_uri,
            remote_uri=self.remote_uri,
            remote_target=Uri.parse(self.remote_target),
            dest=Addr(self.transport, self.host, self.port),  # type: ignore[arg-type]
            local_cseq=self.local_cseq + cseq_margin,
            remote_cseq=None,
            route_set=list(self.route_set),
            via_host=self.via_host,
        )


@dataclass
class Entry:
    cdr: Cdr  # outcome and ended_at are filled in when the call is closed
    dialogs: list[SavedDialog]


@dataclass
class LeftOver:
    """A call a previous run left up, as the journal last had it (``entry`` None: its line
    could not be read)."""

    key: str
    entry: Entry | None
    saved_at: dt.datetime
    legacy_file: Path | None = None  # written by a version that kept a file per call


SEGMENT_PREFIX = "journal-"
SEGMENT_BYTES = 4 * 1024 * 1024


class Journal:
    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        # What earlier runs left: read by left_over, removed by recovered_all.
        self._previous = sorted(self.folder.glob(f"{SEGMENT_PREFIX}*.log"), key=_segment_no)
        self._next_no = max((_segment_no(p) for p in self._previous), default=0) + 1
        self._fd: int | None = None  # this run's segment, opened at the first write
        self._path: Path | None = None
        self._size = 0
        self._live: dict[str, bytes] = {}  # call key -> its last saved line
        # Drops of the previous runs' calls already closed: carried into each new segment
        # until those runs' segments are gone, so a rotation never forgets them.
        self._recovered: list[bytes] = []
        self._unreadable: set[Path] = set()

    @staticmethod
    def _key(call_ref: int, arrived: dt.datetime) -> str:
        # The node numbers calls from 1 at each start: the arrival keeps two starts apart.
        return f"{arrived:%Y%m%dT%H%M%S%f}-{call_ref}"

    def save(self, cdr: Cdr, dialogs: list[SavedDialog]) -> None:
        key = self._key(cdr.call_ref, cdr.arrived_at)
        line = (
            json.dumps(
                {
                    "key": key,
                    "saved_at": dt.datetime.now(dt.UTC).isoformat(),
                    "cdr": json_ready(cdr),
                    "dialogs": [vars(d) for d in dialogs],
                },
                ensure_ascii=False,
            )
            + "\n"
        ).encode()
        self._append(line)
        self._live[key] = line

    def drop(self, call_ref: int, arrived: dt.datetime) -> None:
        key = self._key(call_ref, arrived)
        if self._live.pop(key, None) is not None:  # never saved: nothing to drop
            self._append(_drop_line(key))

    def _append(self, line: bytes) -> None:
        if self._fd is None:
            self._open_segment()
        elif self._size + len(line) > self.segment_bytes:
            self._rotate()
        assert self._fd is not None
        _write_all(self._fd, line)
        self._size += len(line)

    def _open_segment(self) -> None:
        self._path = self.folder / f"{SEGMENT_PREFIX}{self._next_no:08d}.log"
        self._next_no += 1
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        """A new segment with the calls still up, then the old one goes."""
        old_fd, old_path = self._fd, self._path
        self._open_segment()
        assert self._fd is not None
        live = b"".join(self._recovered) + b"".join(self._live.values())
        if live:
            _write_all(self._fd, live)
            self._size += len(live)
        if old_fd is not None:
            os.close(old_fd)
        if old_path is not None:
            with contextlib.suppress(FileNotFoundError):
                old_path.unlink()

    def touch_alive(self) -> None:
        (self.folder / ALIVE).touch()

    def last_alive(self) -> dt.datetime | None:
        try:
            return dt.datetime.fromtimestamp((self.folder / ALIVE).stat().st_mtime, dt.UTC)
        except FileNotFoundError:
            return None

    def left_over(self) -> list[LeftOver]:
        """The calls the previous runs left up, oldest segment first, each as last saved."""
        state: dict[str, LeftOver] = {}
        for path in self._previous:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            for n, raw in enumerate(data.splitlines(), 1):
                if not raw.strip():
                    continue
                try:
                    line: dict[str, Any] = json.loads(raw)
                    key = str(line["key"])
                    if line.get("drop"):
                        state.pop(key, None)
                        continue
                    saved_at = dt.datetime.fromisoformat(line["saved_at"])
                    entry = Entry(
                        from_json(json.dumps(line["cdr"])),
                        [SavedDialog(**d) for d in line.get("dialogs", [])],
                    )
                except (ValueError, KeyError, TypeError):
                    self._unreadable.add(path)
                    bad = f"{path.name}:{n}"
                    state[bad] = LeftOver(bad, None, dt.datetime.now(dt.UTC))
                    continue
                state[key] = LeftOver(key, entry, saved_at)
        for path in sorted(self.folder.glob("*.json")):  # a file per call (before the log)
            mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
            try:
                raw_file: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
                legacy: Entry | None = Entry(
                    from_json(json.dumps(raw_file["cdr"])),
                    [SavedDialog(**d) for d in raw_file.get("dialogs", [])],
                )
            except (OSError, ValueError, KeyError, TypeError):
                legacy = None
            state[path.name] = LeftOver(path.name, legacy, mtime, legacy_file=path)
        return list(state.values())

    def recovered(self, item: LeftOver) -> None:
        """``item``'s CDR is durable: a crash from here on must not close it again."""
        if item.legacy_file is not None:
            if item.entry is None:
                item.legacy_file.rename(item.legacy_file.with_suffix(".unreadable"))
            else:
                item.legacy_file.unlink(missing_ok=True)
        elif item.entry is not None:
            line = _drop_line(item.key)
            self._append(line)
            self._recovered.append(line)

    def recovered_all(self) -> None:
        """Every call left over is closed: the previous runs' segments go (one that had an
        unreadable line is kept for a person)."""
        for path in self._previous:
            if path in self._unreadable:
                path.rename(path.with_suffix(".unreadable"))
            else:
                path.unlink(missing_ok=True)
        self._previous = []
        self._recovered = []


def _drop_line(key: str) -> bytes:
    return (json.dumps({"key": key, "drop": True}) + "\n").encode()


def _segment_no(path: Path) -> int:
    try:
        return int(path.stem.removeprefix(SEGMENT_PREFIX))
    except ValueError:
        return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def finalize_wav(path: Path) -> bool:
    """Make a recording's header say how much audio the file really holds (the recorder
    rewrites it at every flush; the data after the last flush would be ignored)."""
    try:
        with path.open("r+b") as f:
            head = f.read(44)
            if len(head) < 44 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
                return False
            block = int.from_bytes(head[32:34], "little") or 1
            size = f.seek(0, os.SEEK_END)
            data = (size - 44) // block * block
            f.seek(4)
            f.write((36 + data).to_bytes(4, "little"))
            f.seek(40)
            f.write(data.to_bytes(4, "little"))
    except OSError:
        return False
    return True
