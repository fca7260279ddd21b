"""Nights of the incremental refresh for tests with their own schemas: one prod, two stagings of
it, and each night prod's changes, the same staging-side writes on both, then a full sync into
one and an incremental sync into the other, which must end identical."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from dbsync.sync import sync_databases
from tests.support.db import execute


def everything(dsn: str) -> dict:
    """Every public table's rows (sorted) and every sequence's position (the sync's own record of
    what it saw lives in the dbsync schema)."""
    conn = psycopg2.connect(dsn)
    out = {}
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT c.relname FROM pg_class c WHERE c.relkind IN ('r', 'p')"
                        " AND c.relnamespace = 'public'::regnamespace ORDER BY 1")
            for (name,) in cur.fetchall():
                cur.execute(sql.SQL("SELECT * FROM ONLY {}").format(sql.Identifier(name)))
                out[name] = sorted(map(repr, cur.fetchall()))
            cur.execute("SELECT sequencename, last_value FROM pg_sequences ORDER BY 1")
            out["sequences"] = cur.fetchall()
    finally:
        conn.close()
    return out


def prod_and_stagings(make_db, schema: tuple[str, ...], rows: tuple[str, ...]) -> tuple[str, str, str]:
    """(prod, full, inc): `schema` on all three, `rows` on prod, both stagings synced in full."""
    prod, full, inc = make_db("nightprod"), make_db("nightfull"), make_db("nightinc")
    for dsn in (prod, full, inc):
        execute(dsn, *schema)
    execute(prod, *rows)
    for staging in (full, inc):
        sync_databases(prod, staging)
    return prod, full, inc


def night(prod: str, full: str, inc: str, prod_changes, staging_writes=()) -> dict:
    """One night; the incremental sync's result, after checking both stagings end identical."""
    execute(prod, *prod_changes)
    for staging in (full, inc):
        if staging_writes:
            execute(staging, *staging_writes)
    sync_databases(prod, full)
    result = sync_databases(prod, inc, incremental=True)
    assert everything(inc) == everything(full)
    return result


def modes(result: dict) -> dict[str, str]:
    """table → its mode; a full copy only by the share-changed threshold, else `full: <reason>`."""
    out = {}
    for t in result["tables"]:
        cheaper = t["mode"] == "full" and "a full copy is cheaper" in (t.get("reason") or "")
        out[t["table"].removeprefix("public.")] = t["mode"] if t["mode"] != "full" or cheaper \
            else f"full: {t.get('reason')}"
    return out


def while_reading(dsn: str, tables: tuple[str, ...], work):
    """Run `work()` while a reader with a 50 ms lock timeout counts `tables` on `dsn` in a loop;
    (work's result, the reader's failures, how many rounds it read)."""
    import threading
    import time

    failures, reads, stop = [], [0], threading.Event()

    def reader():
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '50ms'")
            while not stop.is_set():
                try:
                    for table in tables:
                        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                    reads[0] += 1
                except psycopg2.Error as exc:
                    failures.append(str(exc))
        conn.close()

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.1)
    try:
        result = work()
    finally:
        stop.set()
        thread.join()
    return result, failures, reads[0]
