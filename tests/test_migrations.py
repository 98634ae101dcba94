"""Migrations against a real PostgreSQL: empty database, re-run, concurrent runners."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from vtp.db.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations, discover
from vtp.db.models import MODELS

TABLES = {
    "users",
    "courses",
    "lessons",
    "live_sessions",
    "recordings",
    "assignments",
    "submissions",
    "chats",
    "course_enrollments",
    "session_participants",
}


async def _tables(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def test_empty_database_gets_every_table_and_a_record(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        applied = await apply_migrations(conn)
        assert [m.version for m in applied] == [m.version for m in discover()]
        assert TABLES | {"schema_migrations"} <= await _tables(conn)
        recorded = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        assert {r["version"] for r in recorded} == {m.version for m in applied}
        # Re-running is a no-op.
        assert await apply_migrations(conn) == []
    finally:
        await conn.close()


async def test_two_concurrent_runners_apply_each_migration_once(
    empty_database_url: str,
) -> None:
    first = await asyncpg.connect(empty_database_url)
    second = await asyncpg.connect(empty_database_url)
    try:
        results = await asyncio.gather(apply_migrations(first), apply_migrations(second))
        applied = [m.version for result in results for m in result]
        assert sorted(applied) == [m.version for m in discover()]
        count = await first.fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(discover())
    finally:
        await first.close()
        await second.close()


async def test_failed_migration_rolls_back_and_is_not_recorded(
    empty_database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "sql"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "900_broken.sql").write_text(
        "CREATE TABLE half_done (id int); SELECT no_such_function();"
    )
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await apply_migrations(conn, folder)
        assert "half_done" not in await _tables(conn)
        last = discover()[-1].version
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == last
        # The lock was released: fixing the file lets the next run finish.
        (folder / "900_broken.sql").write_text("CREATE TABLE half_done (id int);")
        assert [m.version for m in await apply_migrations(conn, folder)] == [900]
    finally:
        await conn.close()


async def test_edited_applied_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "sql"
    shutil.copytree(MIGRATIONS_DIR, folder)
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn, folder)
        path = folder / "001_initial_schema.sql"
        path.write_text(path.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, folder)
    finally:
        await conn.close()


def test_badly_named_migration_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1-init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="bad migration file name"):
        discover(tmp_path)


async def test_models_match_table_columns(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for table, model in MODELS.items():
            rows = await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
                table,
            )
            columns = {r["column_name"] for r in rows} - {"password_hash"}
            assert set(model.model_fields) == columns, table
    finally:
        await conn.close()


async def test_every_foreign_key_is_indexed(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        unindexed = await conn.fetch(
            """
            SELECT c.conrelid::regclass::text AS tbl, a.attname AS col
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND NOT EXISTS (
                SELECT 1 FROM pg_index i
                WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
            """
        )
        assert [(r["tbl"], r["col"]) for r in unindexed] == []
    finally:
        await conn.close()


async def test_constraints_hold(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        insert = (
            "INSERT INTO users (email, display_name, password_hash, role) "
            "VALUES ($1, 'x', 'h', $2) RETURNING id"
        )
        teacher = await conn.fetchval(insert, "T@Example.org", "teacher")
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.fetchval(insert, "t@example.ORG", "student")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.fetchval(insert, "other@example.org", "superuser")
        student = await conn.fetchval(insert, "s@example.org", "student")
        course = await conn.fetchval(
            "INSERT INTO courses (code, title, owner_id) VALUES ('C1', 'Course', $1) RETURNING id",
            teacher,
        )
        enrol = "INSERT INTO course_enrollments (course_id, user_id) VALUES ($1, $2)"
        await conn.execute(enrol, course, student)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(enrol, course, student)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO live_sessions (course_id, host_id, title, scheduled_start, "
                "scheduled_end) VALUES ($1, $2, 't', now(), now() - interval '1 hour')",
                course,
                teacher,
            )
        # A teacher who owns a course cannot be deleted out from under it...
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("DELETE FROM users WHERE id = $1", teacher)
        # ...while deleting a course takes its enrollments with it.
        await conn.execute("DELETE FROM courses WHERE id = $1", course)
        assert await conn.fetchval("SELECT count(*) FROM course_enrollments") == 0
        # updated_at moves on update.
        before = await conn.fetchval("SELECT updated_at FROM users WHERE id = $1", student)
        await conn.execute("UPDATE users SET display_name = 'y' WHERE id = $1", student)
        after = await conn.fetchval("SELECT updated_at FROM users WHERE id = $1", student)
        assert after > before
    finally:
        await conn.close()
