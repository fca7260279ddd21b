"""The incremental refresh against a full sync of the same state, in the same run.

Two stagings start from one full sync of the benchmark database. Per pair: prod changes about 1%
of the rows of every table (updates, inserts and deletes, spread across each table) and both
stagings get the same day of staging-side writes; then, timed, `db-sync sync` (full) into one and
`db-sync sync --incremental` into the other. Both must end identical (every table's rows, every
sequence). A last round changes every row of prod's tables, where the incremental sync must fall
back to full copies (the auto choice). Goals, on the 1M-book database (scale 4.25, what
`make bench` runs this at): a later night <= 0.3x the full sync (stretch 0.2x), the first night
after a full sync <= 0.7x (stretch 0.6x), <= 1.1x with every row changed.

Then verify's costs (dbsync.verify), masked with the shipped rules: a full sync, the same with
`--verify`, and a standalone `db-sync verify` of the result, each timed. Goal: what `--verify`
adds, and a standalone verify, each <= 0.5x the full sync.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from benchmarks.common import Table, connect, create_database, drop_database, fmt_ratio, fmt_s, median, run_child
from benchmarks.sync_bench import DST, SRC, db_sync_command, prepare, state
from localdev.sampledata import create_schema

DST2 = "bench_sync_dst_inc"


def _execute(dsn: str, statements) -> None:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            for st in statements:
                cur.execute(*st) if isinstance(st, tuple) else cur.execute(st)
        conn.commit()
    finally:
        conn.close()


def prod_changes(k: int) -> list[tuple[str, dict]]:
    """About 1% of each table: ~0.6% updated, ~0.2% inserted, ~0.2% deleted, spread by key."""
    p = {"k": str(k), "u": k % 167, "d": k % 499, "b": k % 997}
    return [(st, p) for st in (
        "UPDATE users SET display_name = display_name || %(k)s WHERE id %% 167 = %(u)s",
        "UPDATE authors SET born = coalesce(born, 1900) + 1 WHERE id %% 167 = %(u)s",
        "UPDATE books SET title = title || %(k)s WHERE id %% 167 = %(u)s",
        "UPDATE reviews SET rating = 1 + rating %% 5 WHERE id %% 167 = %(u)s",
        "DELETE FROM reviews WHERE id %% 499 = %(d)s",
        "DELETE FROM book_authors WHERE book_id %% 499 = %(d)s",
        "DELETE FROM books WHERE id %% 997 = %(b)s",
        "INSERT INTO books (title, owner_id) SELECT 'bench new ' || g, 1 FROM generate_series(1, 300) g",
        "INSERT INTO reviews (book_id, user_id, rating, body) SELECT b.id, 1, 4, 'bench review'"
        " FROM books b ORDER BY b.id DESC LIMIT 900",
        "INSERT INTO users (email, display_name) SELECT 'bench' || g || '-' || %(k)s || '@corp.test', 'bench user'"
        " FROM generate_series(1, 80) g",
    )]


STAGING_WRITES = [
    "INSERT INTO books (title) SELECT 'a tester wrote this' FROM generate_series(1, 20)",
    "UPDATE authors SET name = name || ' (staging edit)' WHERE id % 1000 = 7",
    "DELETE FROM reviews WHERE id % 5000 = 3",
]
EVERY_ROW = ["UPDATE users SET display_name = display_name || '!'", "UPDATE authors SET born = coalesce(born, 0) + 1",
             "UPDATE books SET title = title || '!'", "UPDATE reviews SET rating = 1 + rating % 5",
             "UPDATE book_authors SET author_id = author_id"]


def _db_sync(*args: str, env_extra: dict | None = None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("SYNC_TARGET_ALLOWLIST", "SYNC_RULES_FILE", "SYNC_MODE", "SYNC_VERIFY", "SYNC_METRICS",
                        "SYNC_MASKING_KEY", "SYNC_MASKING_KEY_SECRET_ARN")}
    r = run_child([db_sync_command(), *args], env={**env, **(env_extra or {})})
    if r.returncode != 0:
        raise RuntimeError(f"db-sync {args[0]} failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-2000:]}")
    return r


def _sync(src: str, dst: str, *, incremental: bool):
    return _db_sync("sync", "--source", src, "--target", dst, "--json", *(["--incremental"] if incremental else []))


RULES = str(Path(__file__).resolve().parent.parent / "backend" / "sync-rules.yaml")
MASKING = {"SYNC_MASKING_KEY": "benchmark masking key, 32 characters or more"}


def verify_costs(src: str, dst: str, log) -> dict:
    """A masked full sync, the same with --verify, a standalone verify of its result: seconds.
    What --verify adds is its run's own `verify` phase, not the difference of the two runs' wall
    times: on this machine two ~10 s runs of the same sync differ by more than that phase takes."""
    masked = ("sync", "--source", src, "--target", dst, "--rules", RULES, "--json")
    _checkpoint(src)
    full = _db_sync(*masked, env_extra=MASKING).seconds
    _checkpoint(src)
    verified = _db_sync(*masked, "--verify", env_extra=MASKING)
    added = json.loads(verified.stdout)["timings"]["verify"]
    _checkpoint(src)
    alone = _db_sync("verify", "--source", src, "--target", dst, "--rules", RULES, "--json", env_extra=MASKING)
    steps = json.loads(alone.stdout)["timings"]
    log(f"  verify: full sync {fmt_s(full)}  with --verify {fmt_s(verified.seconds)} (its verify phase {fmt_s(added)})"
        f"  verify alone {fmt_s(alone.seconds)} ({', '.join(f'{k} {v:.2f} s' for k, v in steps.items())})")
    return {"full": full, "sync_verify": verified.seconds, "verify_phase": added, "verify": alone.seconds,
            "verify_steps": steps}


def _checkpoint(dsn: str) -> None:
    """Before each timed sync, on this 2-core machine: the WAL of what ran before (a full sync
    writes the whole database) flushed now, not by a checkpoint in the middle of the next timed
    run; and no autovacuum worker running (each full sync leaves a freshly written staging that
    autovacuum visits within a minute, on a core a timed run needs). Up to a minute's wait."""
    conn = connect(dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CHECKPOINT")
            for _ in range(600):
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'")
                if cur.fetchone()[0] == 0:
                    break
                time.sleep(0.1)
    finally:
        conn.close()


def _round(src, full_dst, inc_dst, changes, log, label):
    _execute(src, changes)
    for dst in (full_dst, inc_dst):
        _execute(dst, STAGING_WRITES)
    _checkpoint(src)
    full = _sync(src, full_dst, incremental=False)
    _checkpoint(src)
    inc = _sync(src, inc_dst, incremental=True)
    a, b = state(full_dst, fingerprint=True), state(inc_dst, fingerprint=True)
    if a != b:
        raise RuntimeError(f"after {label} the incremental staging differs from the full one: {a} != {b}")
    log(f"  {label}: full {fmt_s(full.seconds)}  incremental {fmt_s(inc.seconds)}")
    log(f"    {_breakdown(inc.stdout)}")
    return full.seconds, inc.seconds


def _breakdown(stdout: str) -> str:
    """The incremental night's phases that took 10 ms or more."""
    return ", ".join(f"{k} {v:.3f}" for k, v in json.loads(stdout)["timings"].items() if v >= 0.01)


def run(server, *, scale: float = 1.0, pairs: int = 3, log=print) -> tuple[Table, dict]:
    log(f"incremental at scale {scale:g} ({pairs} rounds of ~1% changes, then one of every row changed)")
    src, dst, counts, size = prepare(server, scale, log)
    dst2 = create_database(server, DST2)
    try:
        conn = connect(dst2)
        try:
            create_schema(conn)
        finally:
            conn.close()
        _sync(src, dst, incremental=False)
        _sync(src, dst2, incremental=False)
        small = [_round(src, dst, dst2, prod_changes(k + 1), log, f"round {k + 1} (~1%)") for k in range(pairs)]
        # Before the every-row round, which leaves a dead version of every prod row until
        # autovacuum comes: verify's costs are the benchmark database's, not a bloated copy's.
        costs = verify_costs(src, dst, log)
        every = _round(src, dst, dst2, EVERY_ROW, log, "every row changed")
        if state(src) != state(dst2):
            raise RuntimeError("the incremental staging's counts or sequences differ from prod's")
    finally:
        drop_database(server, DST2)
        drop_database(server, DST)
        drop_database(server, SRC)
    table = Table("Incremental: db-sync sync --incremental vs a full db-sync sync of the same state (same run)",
                  ["changes", "size", "rounds", "full sync", "incremental", "incremental/full"])
    full_s, inc_s = [f for f, _ in small], [i for _, i in small]
    table.add("~1% of rows", f"{size:.0f} MB", pairs, fmt_s(median(full_s)), fmt_s(median(inc_s)),
              fmt_ratio(median(inc_s), median(full_s)))
    # Round 1 is the first incremental night, after a full sync, whose record it reads like the
    # others (every sync writes one).
    table.add("~1%, first night (after a full sync)", f"{size:.0f} MB", 1, fmt_s(small[0][0]), fmt_s(small[0][1]),
              fmt_ratio(small[0][1], small[0][0]))
    if pairs > 1:
        later_full, later_inc = median([f for f, _ in small[1:]]), median([i for _, i in small[1:]])
        table.add("~1%, later nights (since the last sync)", f"{size:.0f} MB", pairs - 1, fmt_s(later_full),
                  fmt_s(later_inc), fmt_ratio(later_inc, later_full))
    table.add("every row", f"{size:.0f} MB", 1, fmt_s(every[0]), fmt_s(every[1]), fmt_ratio(every[1], every[0]))
    table.notes.append("each round: prod updates ~0.6%, inserts ~0.2%, deletes ~0.2% of every table, spread by key;"
                       " both stagings get the same staging-side writes; both end identical (checked)")
    table.add("sync --verify: what it adds (masked)", f"{size:.0f} MB", 1, fmt_s(costs["full"]),
              fmt_s(costs["verify_phase"]), fmt_ratio(costs["verify_phase"], costs["full"]))
    table.add("verify alone, after it (masked)", f"{size:.0f} MB", 1, fmt_s(costs["full"]), fmt_s(costs["verify"]),
              fmt_ratio(costs["verify"], costs["full"]))
    table.notes.append("goals: later nights <= 0.3x (stretch 0.2x); the first night after a full sync <= 0.7x"
                       " (stretch 0.6x); <= 1.1x with every row changed")
    table.notes.append("verify rows: the shipped rules and a masking key on all three; the incremental column holds"
                       " the --verify run's own verify phase, then a standalone verify's; goal <= 0.5x each")
    return table, {"scale": scale, "small": small, "every": every, "rows": counts, "verify": costs}
