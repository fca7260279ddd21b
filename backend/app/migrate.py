"""Apply the SQL files in app/migrations to a database, once each, in file-name order.

Plain numbered SQL files and a tracking table: the schema is small, the files are what a DBA
reads, and nothing else needs installing in the Lambda. Each file runs in its own transaction
together with its row in `schema_migrations`, so a failed file leaves no half-applied state.
Run as `make migrate` or `python -m app.migrate [--dsn URL]`; without --dsn it migrates the API's
own database, found as the API finds it (DATABASE_URL, else DB_SECRET_ARN with DB_HOST/DB_PORT/DB_NAME).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg2

from dbsync import sqltext

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


# Serialises migrators: two deploys migrating at once must not both apply the same file.
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('app.migrate'))"


def apply_migrations(conn) -> list[str]:
    """Apply pending migrations on `conn` (left in autocommit=False); return the names applied.

    Every transaction takes the advisory lock first, so a concurrent migrator waits rather than
    racing: the lock is released at each commit, so each file's transaction checks again, under
    the lock, whether another migrator has applied the file in between."""
    conn.autocommit = False
    with conn.cursor() as cur:
        # Before CREATE TABLE IF NOT EXISTS too: run concurrently, that can fail on a duplicate key.
        cur.execute(LOCK_SQL)
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT name FROM schema_migrations")
        done = {r[0] for r in cur.fetchall()}
    conn.commit()
    applied = []
    for path in migration_files():
        if path.name in done:
            continue
        with conn.cursor() as cur:
            cur.execute(LOCK_SQL)
            cur.execute("SELECT 1 FROM schema_migrations WHERE name = %s", (path.name,))
            if cur.fetchone() is not None:
                conn.rollback()
                continue
            cur.execute(sqltext.migration(path.read_text()))
            cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
        conn.commit()
        applied.append(path.name)
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="default: the API's database (DATABASE_URL, or DB_SECRET_ARN with "
                                      "DB_HOST/DB_PORT/DB_NAME)")
    args = parser.parse_args(argv)
    from app.core.settings import Settings
    from dbsync.connect import connect
    from dbsync.errors import DbSyncError

    try:
        # A bad setting is a SettingsError (a DbSyncError): one line naming the variable.
        settings = Settings.load()
        options = {"lock_timeout": settings.lock_timeout, "application_name": "app.migrate"}
        conn = connect(args.dsn, role="API", **options) if args.dsn else settings.connect(**options)
    except DbSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        applied = apply_migrations(conn)
    except psycopg2.Error as exc:
        print(f"error: migration failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
