"""The incremental refresh on a real PostgreSQL: from the same prod state, a full sync into one
staging and an incremental sync into another end identical — every table, every sequence —
with masked columns, partitions and an identity column, after writes on both sides."""

from __future__ import annotations

import psycopg2
import pytest

from dbsync.errors import DbSyncError
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import load_rules
from dbsync.sync import apply, delta, ranges, sync_databases
from localdev.oldsync import replicate_like_old_sync_dsn
from localdev.sampledata import build_prod
from tests.support.db import execute
from tests.support.nights import everything, while_reading

RULES = "backend/sync-rules.yaml"
KEY = MaskingKey(b"incremental test key, 32 characters or more")
EXTRA = ("CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL, note text,"
         " PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
         "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
         "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
         "CREATE TABLE tags (label text, weight int)")  # no primary key: always a full copy



def make_prod(make_db, scale: float) -> str:
    prod = make_db("incprod")
    conn = psycopg2.connect(prod)
    build_prod(conn, scale=scale)
    conn.close()
    execute(prod, *EXTRA, "INSERT INTO events (at, note) SELECT DATE '2025-06-01' + g, 'e' || g"
                          " FROM generate_series(1, 400) g",
            "INSERT INTO tags SELECT 't' || g, g FROM generate_series(1, 20) g")
    return prod


def staging_of(make_db, prod: str) -> str:
    staging = make_db("incstaging")
    replicate_like_old_sync_dsn(prod, staging)
    sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY)
    return staging


PROD_CHANGES = (
    "UPDATE books SET title = title || ' (2nd ed.)' WHERE id % 50 = 0",
    "UPDATE users SET email = 'changed' || id || '@corp.test' WHERE id % 20 = 0",
    "INSERT INTO books (title, owner_id) SELECT 'new ' || g, 1 FROM generate_series(1, 5) g",
    "DELETE FROM reviews WHERE id % 40 = 0",
    "INSERT INTO reviews (book_id, user_id, rating, body) SELECT 1, 1, 5, 'fresh' FROM generate_series(1, 3)",
    "DELETE FROM book_authors WHERE book_id % 45 = 0",
    "UPDATE events SET note = 'moved' WHERE id % 30 = 0",
    "INSERT INTO events (at, note) VALUES ('2026-03-01', 'new event')",
    "UPDATE tags SET weight = weight + 1 WHERE weight < 3",
)
STAGING_WRITES = (
    "INSERT INTO books (title) VALUES ('a tester wrote this')",
    "UPDATE authors SET name = 'edited on staging' WHERE id = 2",
    "DELETE FROM book_authors WHERE book_id = 3",
    "DELETE FROM reviews WHERE id = 5",
)


def night(prod: str, full: str, inc: str, prod_changes, staging_writes) -> dict:
    """One night: prod changes, both stagings get the same staging-side writes, then a full sync
    into one and an incremental sync into the other, which must end identical; the incremental
    sync's result."""
    execute(prod, *prod_changes)
    for staging in (full, inc):
        execute(staging, *staging_writes)
    sync_databases(prod, full, rules=load_rules(RULES), masking_key=KEY)
    result = sync_databases(prod, inc, rules=load_rules(RULES), masking_key=KEY, incremental=True)
    assert everything(inc) == everything(full)
    return result


@pytest.mark.parametrize("scale", [0.001, 0.004])
def test_incremental_ends_exactly_where_a_full_sync_ends(make_db, scale):
    prod = make_prod(make_db, scale)
    full, inc = staging_of(make_db, prod), staging_of(make_db, prod)
    result = night(prod, full, inc, PROD_CHANGES, STAGING_WRITES)
    modes = {t["table"]: t["mode"] for t in result["tables"]}
    assert modes["public.tags"] == "full"  # no primary key
    assert modes["public.books"] == "delta" and modes["public.events"] == "delta"
    books = next(t for t in result["tables"] if t["table"] == "public.books")
    # prod's 5 new books (one of them takes the id the tester's row had) and its edited titles
    assert books["rows_copied"] >= 5 and books["rows_copied"] < books["rows"] / 4
    assert books["found"] == "since the last sync"  # the full sync recorded what it saw: no digest night
    # The next night: what the last sync saw is recorded on staging, so no row is digested.
    result = night(prod, full, inc, (
        "UPDATE books SET title = 'retitled' WHERE id % 7 = 1", "DELETE FROM reviews WHERE id % 9 = 2",
        "INSERT INTO users (email, display_name) VALUES ('late@corp.test', 'Late Comer')",
        "UPDATE events SET note = 'again' WHERE id % 11 = 0"), (
        "UPDATE books SET title = 'staging edit' WHERE id = 4", "DELETE FROM book_authors WHERE book_id = 6",
        "INSERT INTO authors (name) VALUES ('staging author')"))
    found = {t["table"]: t.get("found") for t in result["tables"]}
    assert found["public.books"] == found["public.reviews"] == found["public.events"] == "since the last sync"


def test_an_unchanged_table_is_not_written_at_all(make_db):
    prod = make_prod(make_db, 0.001)
    staging = staging_of(make_db, prod)
    execute(prod, "UPDATE books SET title = 'x' WHERE id = 1")
    execute(staging, "SELECT 1")
    before = {r[0]: r[1] for r in _tuple_counts(staging)}
    result = sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True)
    modes = {t["table"]: t["mode"] for t in result["tables"]}
    assert modes["public.users"] == "unchanged" and modes["public.books"] == "delta"
    after = {r[0]: r[1] for r in _tuple_counts(staging)}
    assert after["users"] == before["users"]  # no tuple written
    assert after["books"] > before["books"]


def _tuple_counts(dsn: str):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_force_next_flush()")
            cur.execute("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables")
            return cur.fetchall()
    finally:
        conn.close()


def rewrite_books(make_db, *, forget_record: bool) -> dict:
    """Every book changed on prod, then an incremental sync: books' row in its result, after
    checking staging's books equal prod's."""
    prod = make_prod(make_db, 0.001)
    staging = staging_of(make_db, prod)
    if forget_record:
        execute(staging, "DROP SCHEMA dbsync CASCADE")
    execute(prod, "UPDATE books SET title = title || '!'")
    result = sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True)
    assert everything(staging)["books"] == everything(prod)["books"]
    return next(t for t in result["tables"] if t["table"] == "public.books")


def test_every_row_changed_falls_back_to_a_full_copy(make_db):
    """Without the sync's record: the digest path's key sample decides."""
    books = rewrite_books(make_db, forget_record=True)
    assert books["mode"] == "full" and "full copy is cheaper" in books["reason"]


def test_a_table_mostly_rewritten_since_the_last_sync_is_told_by_a_sample(make_db):
    """A sample of prod's pages sends it to a full copy before either side summarises it."""
    books = rewrite_books(make_db, forget_record=False)
    assert books["mode"] == "full" and "(a sample): a full copy is cheaper" in books["reason"]


def test_staging_readers_never_wait_during_an_incremental_sync(make_db):
    prod = make_prod(make_db, 0.004)
    staging = staging_of(make_db, prod)
    execute(prod, *PROD_CHANGES)
    tables = ("books", "users", "reviews", "events", "book_authors")
    _, failures, reads = while_reading(staging, tables, lambda: sync_databases(
        prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True, tables=[*tables, "authors"]))
    assert failures == [] and reads > 0


def test_a_delta_that_breaks_a_constraint_reruns_the_sync_in_full(make_db):
    """Two users swap emails on prod: updated in place one row at a time, the unique index would
    see a duplicate; the sync rolls back and runs again in full, ending where a full sync ends."""
    prod = make_prod(make_db, 0.001)
    execute(prod, "UPDATE users SET email = 'one@swap.test' WHERE id = 1",
            "UPDATE users SET email = 'two@swap.test' WHERE id = 2")
    staging = staging_of(make_db, prod)
    execute(prod, "UPDATE users SET email = 'spare@swap.test' WHERE id = 1",
            "UPDATE users SET email = 'one@swap.test' WHERE id = 2",
            "UPDATE users SET email = 'two@swap.test' WHERE id = 1")
    result = sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True)
    assert "broke a constraint" in result["fallback"] and "synced again in full" in result["fallback"]
    full = staging_of(make_db, prod)
    assert everything(staging)["users"] == everything(full)["users"]


SPARSE_PROD_CHANGES = (
    "UPDATE books SET title = title || ' (rev.)' WHERE id % 97 = 5",
    "DELETE FROM reviews WHERE id % 211 = 7",
    "DELETE FROM book_authors WHERE book_id % 331 = 3",
    "INSERT INTO reviews (book_id, user_id, rating, body) SELECT 1, 1, 3, 'new' FROM generate_series(1, 4)",
)


@pytest.mark.parametrize("found", ["since the last sync", "by digest"])
@pytest.mark.parametrize("same_major", [True, False], ids=["internal hashes", "md5 (servers of two majors)"])
def test_only_the_key_ranges_whose_summaries_differ_are_compared(make_db, monkeypatch, same_major, found):
    if not same_major:
        monkeypatch.setattr(delta, "_same_major", lambda run: False)
    prod = make_prod(make_db, 0.02)
    full, inc = staging_of(make_db, prod), staging_of(make_db, prod)
    if found == "by digest":
        execute(inc, "DELETE FROM dbsync.sync_state")  # no record of the last sync: digests decide
    result = night(prod, full, inc, SPARSE_PROD_CHANGES, STAGING_WRITES)
    tables = {t["table"]: t for t in result["tables"]}
    # Since the last sync, a key of one integer column is read off exact key sets instead.
    for name in ("public.book_authors",) if found == "since the last sync" else ("public.books", "public.reviews",
                                                                                 "public.book_authors"):
        t = tables[name]
        assert t["mode"] == "delta" and t["found"] == found and "key_ranges_exact" not in t
        assert 0 < t["key_ranges_compared"] < t["key_ranges"] / 4, t
    assert result["validation"]["ok"]


def test_a_staging_transaction_older_than_the_sync_that_writes_after_it_is_undone(make_db):
    """Its xid is older than the sync's own, but it had not ended when the sync committed."""
    prod = make_prod(make_db, 0.001)
    staging = staging_of(make_db, prod)
    writer = psycopg2.connect(staging)
    try:
        with writer.cursor() as cur:
            cur.execute("SELECT pg_current_xact_id()")  # the xid is taken now, before the sync's
        sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True)
        with writer.cursor() as cur:
            cur.execute("UPDATE books SET title = 'written after the sync' WHERE id = 1")
        writer.commit()
    finally:
        writer.close()
    result = sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True)
    books = next(t for t in result["tables"] if t["table"] == "public.books")
    assert books["found"] == "since the last sync" and books["rows_copied"] >= 1
    assert everything(staging)["books"] == everything(prod)["books"]


def test_a_delete_the_apply_missed_fails_the_count_check(make_db, monkeypatch):
    """Staging's count after a delta comes from its summary and the statements' row counts; a
    wrong one fails the run like a wrong COPY would."""
    prod = make_prod(make_db, 0.02)
    staging = staging_of(make_db, prod)
    sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True)
    execute(prod, *SPARSE_PROD_CHANGES)
    monkeypatch.setattr(apply, "delete_gone", lambda run, unit, key, i: 0)
    with pytest.raises(DbSyncError, match="row counts differ"):
        sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True)


def test_a_summary_gets_memory_for_its_ranges_and_gives_the_settings_back(make_db):
    """The planner takes every key for a range of its own and would spill or sort the table: a
    summary gets work_mem for the ranges it has and no sort, and the rest of the transaction
    gets the settings back (never less memory than it had)."""
    conn = psycopg2.connect(make_db("aggregating"))
    try:
        def settings():
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('work_mem'), current_setting('enable_sort')")
                return cur.fetchone()

        before = settings()
        with ranges.room_for(125_000, conn, sort=False):
            assert settings() == ("31250kB", "off")
        assert settings() == before
        with ranges.room_for(10, conn, sort=False):
            assert settings() == (before[0], "off")  # never lowered
        assert settings() == before
        with ranges.room_for(125_000, conn):
            assert settings() == ("31250kB", before[1])  # a join's: memory only
        assert settings() == before
    finally:
        conn.close()


def test_a_key_python_cannot_hold_is_fetched_by_its_text(make_db):
    """A staging edit of the row keyed 'infinity' (which psycopg2 reads as date.max) is undone
    from prod's row like any other; a composite key of an integer and a date too; and text keys
    that need quoting, each fetched as itself."""
    prod, staging = make_db("textkeysprod"), make_db("textkeysstaging")
    for db in (prod, staging):
        execute(db, "CREATE TABLE days (d date PRIMARY KEY, note text)",
                "CREATE TABLE shifts (n int, d date, note text, PRIMARY KEY (n, d))",
                "CREATE TABLE labels (k text PRIMARY KEY, note text)")
    execute(prod, "INSERT INTO days SELECT DATE '2026-01-01' + g, 'day' FROM generate_series(1, 20) g",
            "INSERT INTO days VALUES ('infinity', 'forever')",
            "INSERT INTO shifts SELECT g, DATE '2026-01-01' + g, 'shift' FROM generate_series(1, 20) g",
            "INSERT INTO shifts VALUES (1, '-infinity', 'first')",
            # keys whose text needs quoting in an array's text form (how a one-column key's rows are fetched)
            "INSERT INTO labels SELECT k, 'label' FROM unnest(ARRAY['a,b', 'say \"hi\"', 'back\\slash', '{braced}',"
            " '', ' ', 'NULL', 'it''s']) k",
            "INSERT INTO labels SELECT 'plain ' || g, 'label' FROM generate_series(1, 40) g")
    sync_databases(prod, staging)
    execute(staging, "UPDATE days SET note = 'staging edit' WHERE d = 'infinity'",
            "UPDATE shifts SET note = 'staging edit' WHERE d = '-infinity'",
            "UPDATE labels SET note = 'staging edit' WHERE k NOT LIKE 'plain %'")
    result = sync_databases(prod, staging, incremental=True)
    modes = {t["table"]: t["mode"] for t in result["tables"]}
    assert modes == {"public.days": "delta", "public.shifts": "delta", "public.labels": "delta"}
    assert everything(staging) == everything(prod)


def test_exact_key_sets_at_the_edges_of_the_integers(make_db, monkeypatch):
    """A key of one integer column is read off 64-key bitmaps: negative keys, the sign bit, both
    ends of bigint and smallint, a key both sides inserted, a row staging deleted that prod
    changed — and a table whose keys are too sparse for bitmaps keeps the hashed ranges."""
    monkeypatch.setattr(ranges, "EXACT_DENSITY", 0.0)  # any span: the extremes are 2^64 apart
    prod, staging = make_db("edgesprod"), make_db("edgesstaging")
    edges = ("-9223372036854775808, -65, -64, -63, -1, 0, 1, 62, 63, 64, 127, 128,"
             " 9223372036854775806, 9223372036854775807")
    for db in (prod, staging):
        execute(db, "CREATE TABLE edges (id bigint PRIMARY KEY, note text)",
                "CREATE TABLE small (id smallint PRIMARY KEY, note text)")
    execute(prod, f"INSERT INTO edges SELECT unnest('{{{edges}}}'::bigint[]), 'prod'",
            "INSERT INTO edges SELECT g, 'bulk' FROM generate_series(1000, 1999) g",  # so that the changes are few
            "INSERT INTO small SELECT g, 'prod' FROM generate_series(-32768, 32767, 97) g",
            "INSERT INTO small VALUES (32767, 'top')")
    sync_databases(prod, staging)
    execute(prod, "UPDATE edges SET note = 'changed' WHERE id IN (-9223372036854775808, 63, 9223372036854775807)",
            "DELETE FROM edges WHERE id IN (-64, 0, 9223372036854775806)",
            "INSERT INTO edges VALUES (-2, 'new'), (65, 'new')",
            "UPDATE small SET note = 'changed' WHERE id % 50 = 0", "DELETE FROM small WHERE id = 32767")
    execute(staging, "INSERT INTO edges VALUES (65, 'staging took it'), (-3, 'staging only')",
            "DELETE FROM edges WHERE id = 63", "UPDATE edges SET note = 'staging edit' WHERE id = -65",
            "INSERT INTO small VALUES (-32767, 'staging only')", "UPDATE small SET note = 'staging' WHERE id = -32768")
    result = sync_databases(prod, staging, incremental=True)
    tables = {t["table"]: t for t in result["tables"]}
    for name in ("public.edges", "public.small"):
        assert tables[name]["mode"] == "delta" and tables[name].get("key_ranges_exact"), tables[name]
    assert everything(staging) == everything(prod)
    monkeypatch.setattr(ranges, "EXACT_DENSITY", 1 / 8)
    execute(prod, "ANALYZE edges", "UPDATE edges SET note = 'again' WHERE id = 1")
    result = sync_databases(prod, staging, incremental=True)
    edges_row = next(t for t in result["tables"] if t["table"] == "public.edges")
    assert edges_row["mode"] == "delta" and "key_ranges_exact" not in edges_row  # ~1,000 keys over 2^64: hashed
    assert everything(staging) == everything(prod)


def test_prod_rows_written_in_few_ranges_are_read_through_the_index(make_db, monkeypatch):
    """A composite key's table with a few rows written since the last sync: they are read from
    the ranges prod's summary counts them in, not by scanning the table again; none written, no
    read at all."""
    prod, staging = make_db("fewprod"), make_db("fewstaging")
    for db in (prod, staging):
        execute(db, "CREATE TABLE pairs (a int, b int, note text, PRIMARY KEY (a, b))")
    execute(prod, "INSERT INTO pairs SELECT g / 3, g % 3, 'p' FROM generate_series(0, 29999) g", "ANALYZE pairs")
    sync_databases(prod, staging)
    restricted = []
    real = ranges.recent_only
    monkeypatch.setattr(ranges, "recent_only", lambda *a: restricted.append(real(*a)) or restricted[-1])
    execute(prod, "UPDATE pairs SET note = 'changed' WHERE a IN (17, 5000) AND b = 1",
            "INSERT INTO pairs VALUES (9999, 7, 'new')", "DELETE FROM pairs WHERE a = 42")
    result = sync_databases(prod, staging, incremental=True)
    assert result["tables"][0]["mode"] == "delta" and "key_ranges_exact" not in result["tables"][0]
    assert len(restricted) == 1 and "BETWEEN" in restricted[0].as_string(psycopg2.connect(prod))
    assert everything(staging) == everything(prod)
    execute(prod, "DELETE FROM pairs WHERE a = 43")  # nothing written: no read of prod's rows
    sync_databases(prod, staging, incremental=True)
    assert len(restricted) == 1 and everything(staging) == everything(prod)


def _other_sessions(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()")
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("fails", [False, True], ids=["done", "failed part-way"])
def test_summaries_read_ahead_end_with_the_run(make_db, monkeypatch, fails):
    """A second session on each server (prod's in the sync's snapshot) reads the summaries ahead;
    both are gone when the sync ends, and when it fails part-way (the target then unchanged)."""
    from dbsync.sync import ahead

    prod = make_prod(make_db, 0.004)
    full, inc = staging_of(make_db, prod), staging_of(make_db, prod)
    opened = []
    for name in ("prod_session", "staging_session"):
        real = getattr(ahead, name)
        monkeypatch.setattr(ahead, name, lambda *a, real=real: opened.append(real(*a)) or opened[-1])
    if fails:
        before = everything(inc)
        execute(prod, *PROD_CHANGES)
        calls = []
        monkeypatch.setattr(delta, "fetch_changed", lambda *a: calls.append(1) if len(calls) < 2 else 1 / 0)
        with pytest.raises(ZeroDivisionError):
            sync_databases(prod, inc, rules=load_rules(RULES), masking_key=KEY, incremental=True)
        assert everything(inc) == before
    else:
        night(prod, full, inc, PROD_CHANGES, STAGING_WRITES)
    assert len(opened) == 2 and all(session is not None and session.closed for session in opened)
    assert _other_sessions(prod) == _other_sessions(inc) == 0


@pytest.mark.parametrize("missing", ["prod_session", "staging_session"])
def test_without_a_second_session_each_summary_is_read_in_turn(make_db, monkeypatch, missing):
    from dbsync.sync import ahead

    monkeypatch.setattr(ahead, missing, lambda *a: None)
    prod = make_prod(make_db, 0.004)
    full, inc = staging_of(make_db, prod), staging_of(make_db, prod)
    result = night(prod, full, inc, PROD_CHANGES, STAGING_WRITES)
    assert {t["table"]: t["found"] for t in result["tables"] if t["mode"] == "delta"}["public.books"] == \
        "since the last sync"


def test_a_summary_the_second_session_could_not_read_is_read_in_turn(make_db, monkeypatch):
    """The second sessions lock each table NOWAIT before summarising it (never queueing behind a
    lock someone requested after the sync's): when that or the summary fails, the sync's own
    sessions read the summaries left, and the sync ends as it would have."""
    from psycopg2 import sql as pgsql

    from dbsync.sync import ahead

    prod = make_prod(make_db, 0.004)
    full, inc = staging_of(make_db, prod), staging_of(make_db, prod)
    failed = []
    monkeypatch.setattr(ahead, "_LOCK", pgsql.SQL("SELECT 1 / 0 -- {}"))
    real = ahead.Ahead.take
    monkeypatch.setattr(ahead.Ahead, "take", lambda self, *a: failed.append(real(self, *a)) or failed[-1])
    night(prod, full, inc, PROD_CHANGES, STAGING_WRITES)
    assert failed and all(spool is None for spool in failed)
    assert _other_sessions(prod) == _other_sessions(inc) == 0


def test_a_lock_requested_after_the_syncs_does_not_stall_it(make_db, monkeypatch):
    """Someone asks for an ACCESS EXCLUSIVE lock on a prod table the sync has read (a migration):
    it waits for the sync. The second session must not queue behind it — the sync would wait for
    its summary, and nobody would move until the lock timeout (here two minutes)."""
    import threading
    import time

    prod = make_prod(make_db, 0.004)
    staging = staging_of(make_db, prod)
    execute(prod, *PROD_CHANGES)
    blocker, watcher = psycopg2.connect(prod), psycopg2.connect(prod)
    watcher.autocommit = True
    real, queued = delta.look, []

    def look(link, unit, key, last):
        seen = real(link, unit, key, last)  # the sync's session now holds its lock on this table
        if not queued:
            queued.append(threading.Thread(target=lambda: blocker.cursor().execute(
                f"LOCK TABLE {unit.label} IN ACCESS EXCLUSIVE MODE"), daemon=True))
            queued[0].start()
            with watcher.cursor() as cur:
                while cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                  " AND query LIKE 'LOCK TABLE%'") or not cur.fetchone()[0]:
                    time.sleep(0.05)
        return seen

    monkeypatch.setattr(delta, "look", look)
    began = time.perf_counter()
    try:
        sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True,
                       lock_timeout="120s")
        took = time.perf_counter() - began
    finally:
        queued[0].join(timeout=30)
        blocker.rollback()
        blocker.close()
        watcher.close()
    assert took < 60, f"the sync waited {took:.0f} s for a lock queued behind its own"


def test_no_second_session_where_the_lock_table_has_no_room_for_it(make_db, monkeypatch):
    """A second session takes about as many locks again as the sync's own: where the sync already
    needs more than half of a server's lock table, it compares without one."""
    from dbsync.sync import ahead, guards

    prod = make_prod(make_db, 0.004)
    full, inc = staging_of(make_db, prod), staging_of(make_db, prod)
    opened = []
    monkeypatch.setattr(ahead, "prod_session", lambda *a: opened.append(a))
    monkeypatch.setattr(guards, "check_lock_budget", lambda *a, **k: 0.6)
    night(prod, full, inc, PROD_CHANGES, STAGING_WRITES)
    assert opened == []


def test_both_ways_of_counting_a_bitmaps_keys_agree(make_db):
    """A summary's recent keys are counted with bit_count from PostgreSQL 14 on, through the
    bits' text before: the same count for every bitmap, the sign bit's included."""
    from psycopg2 import sql as pgsql

    words = [0, 1, -1, -2**63, 2**63 - 1, 0x5555555555555555, -0x5555555555555556, 12345678901234]
    conn = psycopg2.connect(make_db("ones"))
    try:
        with conn.cursor() as cur:
            for ones in (ranges._ONES, ranges._ONES_BEFORE_14):
                cur.execute(pgsql.SQL("SELECT {} FROM unnest(%s::bigint[]) AS recent").format(ones), (words,))
                assert [n for (n,) in cur.fetchall()] == [bin(w & (2**64 - 1)).count("1") for w in words]
    finally:
        conn.close()
