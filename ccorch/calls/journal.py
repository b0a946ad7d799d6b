"""What a node needs to close its calls after it died: one small file per call that is up.

While a call is up, ``<var>/calls/<n>.json`` holds its CDR so far (every moment of its path,
who it reached, its recording) and the SIP dialog state of each confirmed leg; the node
rewrites it when the call's path moves (answered by the IVR, by an operator) and removes it
once the call's CDR is committed. ``<var>/calls/alive`` is touched every second: after a
crash, its time is the last moment the node is known to have carried the calls.

At the next start (:mod:`ccorch.calls.recovery`) each file left over becomes a closed CDR
(outcome ``node-failure``, ended at the last sign of life), its recording is finalized and
linked, and each far end is sent BYE.

Files are replaced atomically (write, rename) but not fsynced: they survive the process
being killed, which is what they are for; a power cut of the whole machine may lose the
last second's changes (and the database's own durability then matters more).
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


class Journal:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, call_ref: int, arrived: dt.datetime) -> Path:
        # The node numbers calls from 1 at each start: the arrival keeps two starts apart.
        return self.folder / f"{arrived:%Y%m%dT%H%M%S%f}-{call_ref}.json"

    def save(self, cdr: Cdr, dialogs: list[SavedDialog]) -> None:
        path = self._path(cdr.call_ref, cdr.arrived_at)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {"cdr": json_ready(cdr), "dialogs": [vars(d) for d in dialogs]},
                ensure_ascii=False,
            ),
            encoding="utf-8",
        )
        os.replace(tmp, path)

    def drop(self, call_ref: int, arrived: dt.datetime) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(call_ref, arrived).unlink()

    def touch_alive(self) -> None:
        (self.folder / ALIVE).touch()

    def last_alive(self) -> dt.datetime | None:
        try:
            return dt.datetime.fromtimestamp((self.folder / ALIVE).stat().st_mtime, dt.UTC)
        except FileNotFoundError:
            return None

    def left_over(self) -> list[tuple[Path, Entry | None]]:
        """The calls a previous run left up (None: a file that cannot be read)."""
        out: list[tuple[Path, Entry | None]] = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
                entry = Entry(
                    from_json(json.dumps(raw["cdr"])),
                    [SavedDialog(**d) for d in raw.get("dialogs", [])],
                )
            except (OSError, ValueError, KeyError, TypeError):
                entry = None
            out.append((path, entry))
        return out


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
