"""Keys read from the catalog in key order, not column order: a composite primary key declared out
of column order, on its own and under the incremental sync (which cuts key ranges on the key's
leading column)."""

from __future__ import annotations

import psycopg2

from dbsync.catalog import read_catalog
from dbsync.catalog.constraints import keys
from dbsync.sync import sync_databases
from tests.support.db import execute

# Columns a, b, c, d in that order; the key leads with d (an integer), and a (text) comes last.
OUT_OF_ORDER = ("CREATE TABLE parts (a text, b int, c int, d int, note text, e int,"
                " PRIMARY KEY (d, b, c, a), UNIQUE (note, c) INCLUDE (e))")
ROWS = "INSERT INTO parts SELECT 'a' || (g % 3), g % 5, g % 7, g, 'n' || g, g FROM generate_series(1, 3000) g"


def rows(dsn: str) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM parts ORDER BY d, b, c, a")
            return cur.fetchall()
    finally:
        conn.close()


def test_a_composite_key_reads_in_key_order(db):
    with db.cursor() as cur:
        cur.execute(OUT_OF_ORDER)
        found = keys(cur)[("public", "parts")]
    assert found.primary == ("d", "b", "c", "a")
    assert found.unique == {"a", "b", "c", "d", "note"}  # an INCLUDE column is not part of a key
    assert read_catalog(db).keys[("public", "parts")].primary == ("d", "b", "c", "a")


def test_incremental_on_a_key_out_of_column_order_ends_like_a_full_sync(make_db):
    prod, full, inc = make_db("keyprod"), make_db("keyfull"), make_db("keyinc")
    execute(prod, OUT_OF_ORDER, ROWS)
    for staging in (full, inc):
        execute(staging, OUT_OF_ORDER)
        sync_databases(prod, staging)
    execute(prod, "UPDATE parts SET note = note || '!' WHERE d % 211 = 3", "DELETE FROM parts WHERE d % 307 = 5",
            "INSERT INTO parts VALUES ('new', 1, 1, 5000, 'late', 0)")
    for staging in (full, inc):
        execute(staging, "UPDATE parts SET note = 'staging edit' WHERE d = 10")
    sync_databases(prod, full)
    result = sync_databases(prod, inc, incremental=True)
    assert rows(inc) == rows(full) == rows(prod)
    parts = next(t for t in result["tables"] if t["table"] == "public.parts")
    # Cut on d, the key's leading integer column (read as a, text, no range could be cut).
    assert parts["mode"] == "delta" and 0 < parts["key_ranges_compared"] < parts["key_ranges"], parts
