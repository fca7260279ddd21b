"""`make migrate` (python -m app.migrate): the API's schema from the numbered SQL files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_api_lambda import free_port

from app.core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


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
