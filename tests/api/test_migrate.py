"""`make migrate` (python -m app.migrate): the API's schema from the numbered SQL files."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from app.core.settings import Settings
from app.migrate import LOCK_SQL, apply_migrations, migration_files
from tests.support.http import free_port
from tests.support.paths import ROOT


def migrate(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    # This tree's code, whichever tree the virtualenv was installed from.
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "backend"), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "app.migrate", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_applies_once_then_is_up_to_date(make_db, connect_db):
    dsn = make_db("migrate")
    first = migrate(DATABASE_URL=dsn)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "applied: 0001_book_collection.sql"
    again = migrate(DATABASE_URL=dsn)
    assert (again.returncode, again.stdout.strip()) == (0, "applied: nothing (up to date)")
    with connect_db(dsn).cursor() as cur:
        cur.execute("SELECT name FROM schema_migrations")
        assert cur.fetchall() == [("0001_book_collection.sql",)]
        cur.execute("SELECT pg_get_serial_sequence('books', 'id')")
        assert cur.fetchone() == ("public.books_id_seq",)


def test_dsn_option_wins_over_the_environment(make_db):
    dsn = make_db("migrate")
    r = migrate("--dsn", dsn, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert r.returncode == 0 and "0001_book_collection.sql" in r.stdout


def test_clear_one_line_errors():
    r = migrate()
    assert r.returncode == 2
    assert r.stderr == "error: no database configured: set DATABASE_URL or DB_SECRET_ARN\n"
    r = migrate(DATABASE_URL=f"postgresql://me:s3cr3t-pw@127.0.0.1:{free_port()}/books")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("error: cannot connect to the API database (me@127.0.0.1:")
    assert "s3cr3t" not in r.stderr
    r = migrate(DATABASE_URL="postgresql://x@127.0.0.1/db", LOCK_TIMEOUT="whenever")
    assert r.returncode == 2 and "LOCK_TIMEOUT='whenever'" in r.stderr


def test_bad_setting_names_the_variable():
    r = migrate(DATABASE_URL="postgresql://api:hunter2-pw@127.0.0.1/db", DB_PORT="abc")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "error: DB_PORT: Input should be a valid integer, unable to parse string as an integer\n"
    r = migrate(DATABASE_URL="postgresql://api:hunter2-pw@127.0.0.1/db",
                DB_SECRET_ARN="arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds-AbCdEf")
    assert r.returncode == 2
    assert r.stderr == "error: both DATABASE_URL and DB_SECRET_ARN are set; set only one\n"
    assert "hunter2" not in r.stderr


@pytest.mark.parametrize("tracked", [False, True], ids=["fresh database", "tracking table exists"])
def test_two_migrators_at_once_apply_each_file_once(make_db, connect_db, tracked):
    """Two deploys migrating the same database at the same moment: both succeed. (A fresh
    database races on creating the tracking table; a tracked one on applying the new file.)"""
    dsn = make_db("migrate")
    if tracked:
        with connect_db(dsn, autocommit=True).cursor() as cur:
            cur.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY,"
                        " applied_at timestamptz NOT NULL DEFAULT now())")
    holder = connect_db(dsn)
    with holder.cursor() as cur:
        cur.execute(LOCK_SQL)  # both migrators queue up behind this transaction
    results: dict[int, object] = {}

    def run(i: int) -> None:
        try:
            results[i] = apply_migrations(connect_db(dsn))
        except Exception as exc:  # reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in (0, 1)]
    for t in threads:
        t.start()
    watcher = connect_db(dsn, autocommit=True)
    deadline = time.monotonic() + 15
    with watcher.cursor() as cur:
        while True:
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
            if cur.fetchone()[0] == 2 or not all(t.is_alive() for t in threads) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    holder.rollback()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and all(isinstance(r, list) for r in results.values()), results
    assert sorted(results.values(), key=len) == [[], migration_names()]
    with watcher.cursor() as cur:
        cur.execute("SELECT name FROM schema_migrations ORDER BY name")
        assert [r[0] for r in cur.fetchall()] == migration_names()
        cur.execute("SELECT count(*) FROM books")
        assert cur.fetchone() == (0,)


def migration_names() -> list[str]:
    return [p.name for p in migration_files()]
