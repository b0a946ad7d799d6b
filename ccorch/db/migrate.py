"""Ordered SQL migrations, applied once each and recorded in ``ccorch_schema_migrations``.

Files are named ``NNNN_what_it_does.sql`` and applied in version order, each in its own
transaction together with its row in the version table: a failing file changes nothing
and stops the run with the file's name, the database's message and the line. A file that
was changed after it was applied is refused (its checksum no longer matches), because the
databases that already ran it would silently differ from new ones. An advisory lock makes
concurrent starters take turns instead of racing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from ccorch.errors import DatabaseError, MigrationError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = "ccorch_schema_migrations"
# Arbitrary constant shared by every ccorch process that migrates this database.
_LOCK_KEY = 0x63636F72  # "ccor"
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read the migration files of ``directory`` in order, refusing misnamed or duplicate ones."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        m = _FILE_NAME.match(path.name)
        if m is None:
            raise MigrationError(path.name, "file name must look like 0001_what_it_does.sql")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(
                path.name, f"version {version} is also used by {found[version].path.name}"
            )
        found[version] = Migration(version, m.group(2), path, path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def _line_of(sql: str, position: str | None) -> str:
    """Turn PostgreSQL's 1-based character position into ' at line N' (or nothing)."""
    if not position or not position.isdigit():
        return ""
    return f" at line {sql.count(chr(10), 0, int(position) - 1) + 1}"


async def applied_versions(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> dict[int, str]:
    cur = await conn.execute(f"SELECT version, checksum FROM {VERSION_TABLE} ORDER BY version")
    return {int(str(v)): str(c) for v, c in await cur.fetchall()}


# Extensions the schema needs; an external server must offer them (Debian: postgresql-contrib).
REQUIRED_EXTENSIONS = ("pg_trgm", "btree_gist")


async def require_extensions(
    conn: psycopg.AsyncConnection[Any], names: tuple[str, ...] = REQUIRED_EXTENSIONS
) -> None:
    """Fail with a clear message when the server cannot provide an extension the schema uses."""
    cur = await conn.execute(
        "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)", (list(names),)
    )
    available = {r[0] for r in await cur.fetchall()}
    missing = [n for n in names if n not in available]
    if missing:
        raise DatabaseError(
            f"the PostgreSQL server lacks the extension(s) {', '.join(missing)} that ccorch's search needs; "
            "install the server's contrib package (Debian: postgresql-contrib) or use the embedded server "
            "(leave DATABASE_URL unset)"
        )


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply the pending migrations of ``directory`` to the database at ``url``.

    Returns the migrations applied by this call (empty when the schema was current).
    """
    migrations = discover(directory)
    applied_now: list[Migration] = []
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as e:
        raise DatabaseError(f"cannot connect to the database: {str(e).strip()}") from e
    async with conn:
        await require_extensions(conn)
        # Lock first: even CREATE TABLE IF NOT EXISTS races between two starters.
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = await applied_versions(conn)
            for mig in migrations:
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        raise MigrationError(
                            mig.path.name,
                            "the file was changed after it was applied to this database; "
                            "add a new migration instead of editing an applied one",
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(mig.sql.encode("utf-8"))
                        await conn.execute(
                            f"INSERT INTO {VERSION_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                            (mig.version, mig.name, mig.checksum),
                        )
                except psycopg.Error as e:
                    diag = e.diag
                    reason = (diag.message_primary or str(e)).strip()
                    if diag.message_hint:
                        reason += f" (hint: {diag.message_hint})"
                    raise MigrationError(
                        mig.path.name, reason + _line_of(mig.sql, diag.statement_position)
                    ) from e
                log.info("migration applied", extra={"migration": mig.path.name})
                applied_now.append(mig)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
