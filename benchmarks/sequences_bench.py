"""Sequence engine at scale: reset 10,000 serial tables, and the engine against the naive loop.

Two databases on the bench server: `bench_seq_small` (3,000 tables, where the naive loop and the
engine are compared on exactly the same tables) and `bench_seq_big` (10,000 tables: the first
3,000 copied from the small one, the rest added). Every table is `(id serial PRIMARY KEY, v int)`
with a few rows; before each timed run every sequence is set back to 1 (`setval(…, 1, false)`),
so each run has every sequence to move.
"""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from benchmarks.common import (
    BenchUnavailable,
    Table,
    connect,
    create_database,
    drop_database,
    fmt_ratio,
    fmt_s,
    median,
    timed,
)
from dbsync.errors import pg_message

ROWS_PER_TABLE = 3
# Tables created (or sequences broken) per transaction: a few locks each, far under the
# 64 × 100 lock table of a default server.
CHUNK = 500

_MAKE_TABLES = """
CREATE FUNCTION pg_temp.bench_make_tables(lo int, hi int, nrows int) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  FOR i IN lo..hi LOOP
    EXECUTE format('CREATE TABLE public.%I (id serial PRIMARY KEY, v int)', 't_' || i);
    EXECUTE format('INSERT INTO public.%I (v) SELECT g FROM generate_series(1, %s) g', 't_' || i, nrows);
  END LOOP;
END
$fn$
"""

_BREAK_CHUNK = """
SELECT count(setval(s.oid::regclass, 1, false)) FROM (
  SELECT c.oid FROM pg_class c WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace
  ORDER BY c.oid LIMIT %s OFFSET %s) s
"""


def make_tables(dsn: str, lo: int, hi: int) -> None:
    """Create t_lo … t_hi with rows, CHUNK tables per transaction, generated server-side."""
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(_MAKE_TABLES)
            for start in range(lo, hi + 1, CHUNK):
                cur.execute("SELECT pg_temp.bench_make_tables(%s, %s, %s)",
                            (start, min(hi, start + CHUNK - 1), ROWS_PER_TABLE))
                conn.commit()
            # Outside a transaction block VACUUM commits table by table (no lock-table overflow).
            # It settles the catalogs that 10,000 CREATE TABLEs churned, so autovacuum does not
            # do it in the middle of a timed run.
            conn.autocommit = True
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()


def break_sequences(dsn: str) -> int:
    """Every sequence in public back to 1: the next INSERT would collide with row id 1."""
    conn = connect(dsn, autocommit=True)
    broken = 0
    try:
        with conn.cursor() as cur:
            while True:
                cur.execute(_BREAK_CHUNK, (CHUNK * 4, broken))
                n = cur.fetchone()[0]
                broken += n
                if n == 0:
                    return broken
    finally:
        conn.close()


class CountingCursor(psycopg2.extensions.cursor):
    """Counts statements sent: each is one round trip to the server."""

    statements = 0

    def execute(self, query, vars=None):
        CountingCursor.statements += 1
        return super().execute(query, vars)


def naive_reset(conn) -> int:
    """The "first proposal" quoted in issue 2, reproduced as the baseline, f-strings and all:
    information_schema, schema public only, one setval round trip per table, autocommit."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_default LIKE 'nextval%%'"
        )
        columns = cur.fetchall()
        for table, column in columns:
            # The naive baseline being measured builds its SQL this way; nothing else here does.
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"  # noqa: S608
                f" COALESCE(MAX({column}), 0) + 1, false) FROM {table}"
            )
    return len(columns)


def naive_one_transaction(dsn: str) -> str:
    """What the naive loop does when not in autocommit, as the first proposal ran it."""
    break_sequences(dsn)
    conn = connect(dsn)
    try:
        seconds, n = timed(lambda: naive_reset(conn))
        conn.commit()
        return f"finished in {fmt_s(seconds)} ({n} columns)"
    except psycopg2.Error as exc:
        return f"fails: {pg_message(exc)}"
    finally:
        conn.close()


def engine_reset(dsn: str) -> tuple[float, list[dict], int]:
    """Time reset_sequences() alone on a fresh connection, standalone (it commits in batches)."""
    try:
        from dbsync.connect import connect as dbsync_connect
        from dbsync.sequences import reset_sequences
    except ImportError as exc:
        raise BenchUnavailable(f"the sequence engine is not there yet (dbsync.sequences: {exc})") from None
    conn = dbsync_connect(dsn, role="bench")
    conn.cursor_factory = CountingCursor
    try:
        CountingCursor.statements = 0
        seconds, result = timed(lambda: reset_sequences(conn))
    finally:
        conn.close()
    return seconds, result, CountingCursor.statements


# The seed's loop as a process of its own: psycopg2 and the loop, nothing else imported.
NAIVE_PROCESS = """
import sys, psycopg2
conn = psycopg2.connect(sys.argv[1]); conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_default LIKE 'nextval%%'")
for table, column in cur.fetchall():
    cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE(MAX({column}), 0) + 1,"
                f" false) FROM {table}")
"""


def whole_processes(dsn: str, runs: int, log) -> tuple[list[float], list[float]]:
    """`db-sync reset-sequences` and the seed's loop, each a whole process (start-up, imports,
    connection included), alternating on the same broken sequences."""
    import sys

    from benchmarks.common import run_child

    engine = [sys.executable, "-m", "dbsync.cli", "reset-sequences", "--dsn", dsn, "--json"]
    naive = [sys.executable, "-c", NAIVE_PROCESS, dsn]
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(-1, runs):  # run -1: a pair that warms the caches (files, the server's), not counted
        for argv, out in ((engine, times[0]), (naive, times[1])):
            break_sequences(dsn)
            child = run_child(argv)
            if child.returncode != 0:
                raise RuntimeError(f"{argv[2]} exited {child.returncode}: {child.stderr.strip()[-300:]}")
            out.append(child.seconds)
        log(f"  run {i + 1 or 'warm-up'}: whole process: db-sync {fmt_s(times[0][-1])}, naive {fmt_s(times[1][-1])}")
    return times[0][1:], times[1][1:]


def check_engine_result(result: list[dict], ntables: int) -> None:
    """The engine must have moved every broken sequence to just past the data."""
    ours = [r for r in result if str(r.get("table", "")).split(".")[-1].startswith("t_")]
    bad = [r for r in ours if r.get("action") != "reset" or r.get("value") != ROWS_PER_TABLE + 1]
    if len(ours) != ntables or bad:
        raise RuntimeError(f"engine result is wrong: {len(ours)} of {ntables} tables reported,"
                           f" {len(bad)} not reset to {ROWS_PER_TABLE + 1}, e.g. {bad[:2]}")


def check_inserts(dsn: str, ntables: int) -> None:
    """Inserts with the default work again on the first and last table (ids right after the data)."""
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            for i in (1, ntables):
                cur.execute(sql.SQL("INSERT INTO {} (v) VALUES (0) RETURNING id").format(sql.Identifier(f"t_{i}")))
                got = cur.fetchone()[0]
                if got != ROWS_PER_TABLE + 1:
                    raise RuntimeError(f"t_{i}: the next INSERT got id {got}, expected {ROWS_PER_TABLE + 1}")
        conn.rollback()
    finally:
        conn.close()


def run(server, *, tables: int = 10_000, naive_tables: int = 3_000, runs: int = 3, log=print) -> Table:
    naive_tables = min(naive_tables, tables)
    table = Table(
        f"Sequence engine: reset_sequences() vs the naive per-table loop (median of {runs} runs)",
        ["case", "tables", "engine", "naive", "engine/naive"],
    )
    small, big = "bench_seq_small", "bench_seq_big"
    try:
        log(f"  creating {naive_tables} tables …")
        small_dsn = create_database(server, small)
        elapsed, _ = timed(lambda: make_tables(small_dsn, 1, naive_tables))
        log(f"    {fmt_s(elapsed)}")
        big_dsn = None
        if tables > naive_tables:
            log(f"  creating {tables} tables (copy of the {naive_tables} + {tables - naive_tables}) …")
            big_dsn = create_database(server, big, template=small)
            elapsed, _ = timed(lambda: make_tables(big_dsn, naive_tables + 1, tables))
            log(f"    {fmt_s(elapsed)}")

        # Same tables, alternating, so drift on the machine hits both sides alike.
        engine_t, naive_t = [], []
        engine_error = None
        for i in range(runs):
            if engine_error is None:
                if break_sequences(small_dsn) != naive_tables:
                    raise RuntimeError("breaking the sequences did not reach every table")
                try:
                    seconds, result, engine_statements = engine_reset(small_dsn)
                    check_engine_result(result, naive_tables)
                    engine_t.append(seconds)
                    log(f"  run {i + 1}: engine {fmt_s(seconds)} on {naive_tables} tables")
                except BenchUnavailable as exc:
                    engine_error = str(exc)
                    log(f"  engine: {engine_error}")
            break_sequences(small_dsn)
            conn = connect(small_dsn, autocommit=True)
            conn.cursor_factory = CountingCursor
            try:
                CountingCursor.statements = 0
                seconds, n = timed(lambda c=conn: naive_reset(c))
            finally:
                conn.close()
            naive_statements = CountingCursor.statements
            if n != naive_tables:
                raise RuntimeError(f"the naive loop saw {n} columns, expected {naive_tables}")
            naive_t.append(seconds)
            log(f"  run {i + 1}: naive  {fmt_s(seconds)} on {naive_tables} tables")
        check_inserts(small_dsn, naive_tables)

        if engine_error:
            table.add("same tables", naive_tables, "NOT AVAILABLE", fmt_s(median(naive_t)), "n/a")
            table.notes.append(engine_error)
            return table
        table.add("same tables", naive_tables, fmt_s(median(engine_t)), fmt_s(median(naive_t)),
                  fmt_ratio(median(engine_t), median(naive_t)))
        table.notes.append(f"{naive_tables} tables: statements sent (round trips): engine {engine_statements},"
                           f" naive {naive_statements}")
        process_engine, process_naive = whole_processes(small_dsn, runs, log)
        check_inserts(small_dsn, naive_tables)
        table.add("whole process (db-sync reset-sequences vs python -c loop)", naive_tables,
                  fmt_s(median(process_engine)), fmt_s(median(process_naive)),
                  fmt_ratio(median(process_engine), median(process_naive)))

        if big_dsn:
            big_t = []
            for i in range(runs):
                if break_sequences(big_dsn) != tables:
                    raise RuntimeError("breaking the sequences did not reach every table")
                seconds, result, big_statements = engine_reset(big_dsn)
                check_engine_result(result, tables)
                big_t.append(seconds)
                log(f"  run {i + 1}: engine {fmt_s(seconds)} on {tables} tables")
            check_inserts(big_dsn, tables)
            table.add("scale", tables, fmt_s(median(big_t)), "-", "-")
            table.notes.append(f"{tables} tables: the engine sent {big_statements} statements")
            table.notes.append(f"naive loop in one transaction on {tables} tables: {naive_one_transaction(big_dsn)}")
            table.notes.append(f"{tables} tables: min {fmt_s(min(big_t))}, max {fmt_s(max(big_t))};"
                               " goal: well under 5 s with default max_locks_per_transaction")
        table.notes.append(f"every run starts with all sequences at 1 and {ROWS_PER_TABLE} rows per table;"
                           " each result checked, then INSERTs checked on the first and last table")
        return table
    finally:
        drop_database(server, big)
        drop_database(server, small)
