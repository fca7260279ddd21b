"""The shared fixture reproduces the original bug: staging as the old sync left it."""

import psycopg2
import pytest


def test_old_sync_staging_rejects_inserts(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    prod, staging = connect_db(prod_dsn), connect_db(staging_dsn)
    with prod.cursor() as p, staging.cursor() as s:
        for table in ("users", "authors", "books", "book_authors", "reviews"):
            p.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
            s.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
            assert p.fetchone() == s.fetchone()
        s.execute("SELECT count(*) FROM pg_class WHERE relkind = 'S'")
        assert s.fetchone()[0] == 0
        s.execute("SELECT count(*) FROM pg_attribute WHERE attidentity <> '' AND attnum > 0")
        assert s.fetchone()[0] == 0
        s.execute("SELECT has_table_privilege('book_api', 'books', 'INSERT')")
        assert s.fetchone()[0] is True
        with pytest.raises(psycopg2.errors.NotNullViolation,
                           match='null value in column "id" of relation "books" violates not-null constraint'):
            s.execute("INSERT INTO books (title) VALUES ('new')")
