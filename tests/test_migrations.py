"""Migrations on a real PostgreSQL: idempotent, atomic per file, and loud when they fail."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psycopg
import pytest

from ccorch.db.migrate import MIGRATIONS_DIR, VERSION_TABLE, discover, migrate
from ccorch.errors import MigrationError

SCHEMA_QUERY = """
    SELECT table_name, column_name, data_type FROM information_schema.columns
    WHERE table_schema = 'public' ORDER BY 1, 2
"""


def schema(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        cols = conn.execute(SCHEMA_QUERY).fetchall()
        exts = conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall()
        return cols + exts


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(f"SELECT version FROM {VERSION_TABLE} ORDER BY 1")]


def test_shipped_migrations_apply_once_and_twice_changes_nothing(fresh_db: str) -> None:
    first = asyncio.run(migrate(fresh_db))
    assert [m.version for m in first] == [m.version for m in discover()]
    after_first = schema(fresh_db)
    assert ("pg_trgm",) in after_first and ("btree_gist",) in after_first
    assert asyncio.run(migrate(fresh_db)) == []
    assert schema(fresh_db) == after_first
    assert versions(fresh_db) == [m.version for m in discover()]


def write(dir_: Path, name: str, sql: str) -> None:
    (dir_ / name).write_text(sql)


def test_broken_migration_names_file_and_line_and_changes_nothing(
    fresh_db: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_good.sql", "CREATE TABLE agent (id int PRIMARY KEY);\n")
    asyncio.run(migrate(fresh_db, tmp_path))
    before = schema(fresh_db)
    write(
        tmp_path,
        "0002_broken.sql",
        "CREATE TABLE queue (id int PRIMARY KEY);\n"
        "ALTER TABLE agent ADD COLUMN name text;\n"
        "INSERT INTO queue VALUES (1);\n"
        "SELEC broken;\n",
    )
    write(tmp_path, "0003_later.sql", "CREATE TABLE skill (id int);\n")
    with pytest.raises(MigrationError) as err:
        asyncio.run(migrate(fresh_db, tmp_path))
    assert err.value.file == "0002_broken.sql"
    assert "syntax error" in err.value.reason
    assert "line 4" in err.value.reason
    # Neither the failing file's earlier statements nor any later file took effect.
    assert schema(fresh_db) == before
    assert versions(fresh_db) == [1]

    # Fixed, the same run goes through.
    write(tmp_path, "0002_broken.sql", "CREATE TABLE queue (id int PRIMARY KEY);\n")
    assert [m.version for m in asyncio.run(migrate(fresh_db, tmp_path))] == [2, 3]


def test_editing_an_applied_migration_is_refused(fresh_db: str, tmp_path: Path) -> None:
    write(tmp_path, "0001_good.sql", "CREATE TABLE agent (id int);\n")
    asyncio.run(migrate(fresh_db, tmp_path))
    write(tmp_path, "0001_good.sql", "CREATE TABLE agent (id bigint);\n")
    with pytest.raises(MigrationError, match=r"0001_good\.sql.*changed after it was applied"):
        asyncio.run(migrate(fresh_db, tmp_path))


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["1_short.sql"], "file name must look like"),
        (["0001_a.sql", "0001_b.sql"], "version 1 is also used by 0001_a.sql"),
    ],
)
def test_misnamed_files_are_refused(tmp_path: Path, names: list[str], message: str) -> None:
    for n in names:
        write(tmp_path, n, "SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        discover(tmp_path)


def test_concurrent_migrators_take_turns(fresh_db: str, tmp_path: Path) -> None:
    shutil.copytree(MIGRATIONS_DIR, tmp_path / "m")
    write(tmp_path / "m", "0900_slowish.sql", "CREATE TABLE t (id int); SELECT pg_sleep(0.3);\n")

    async def both() -> list[list[object]]:
        return list(
            await asyncio.gather(
                migrate(fresh_db, tmp_path / "m"), migrate(fresh_db, tmp_path / "m")
            )
        )

    a, b = asyncio.run(both())
    # Exactly one of them applied everything; the other found the schema current.
    assert sorted([len(a), len(b)]) == [0, len(discover(tmp_path / "m"))]


def test_a_server_without_a_needed_extension_is_named_clearly(fresh_db: str) -> None:
    from ccorch.db.migrate import require_extensions
    from ccorch.errors import DatabaseError

    async def check() -> None:
        async with await psycopg.AsyncConnection.connect(fresh_db, autocommit=True) as conn:
            await require_extensions(conn)  # the real ones are there
            with pytest.raises(
                DatabaseError, match=r"lacks the extension\(s\) no_such_ext .*postgresql-contrib"
            ):
                await require_extensions(conn, ("pg_trgm", "no_such_ext"))

    asyncio.run(check())
