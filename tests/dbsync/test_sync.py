"""The sync on a real PostgreSQL: the bug fixed, atomicity under injected failures, faithful rows,
foreign keys, sequences mirroring prod."""

from __future__ import annotations

import json
import threading

import psycopg2
import pytest
from psycopg2 import sql

from dbsync.errors import DbSyncError
from dbsync.sync import sync_databases
from tests.support.db import old_sync_copy, snapshot

pytestmark = pytest.mark.usefixtures("no_allowlist")  # tests/dbsync/conftest.py

TABLES = ("authors", "book_authors", "books", "reviews", "schema_migrations", "users")


def run(cur, query, args=None):
    cur.execute(query, args)
    return cur.fetchall()


def data_fingerprint(dsn: str) -> dict:
    return {k: v for k, v in snapshot(dsn).items() if k.startswith("rows ")}


def next_values(dsn: str) -> dict:
    """What the next nextval() of each sequence returns, without calling it."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            out = {}
            for schema, name, inc in run(cur, "SELECT schemaname, sequencename, increment_by FROM pg_sequences"):
                cur.execute(sql.SQL("SELECT CASE WHEN is_called THEN last_value + %s ELSE last_value END"
                                    " FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name)), (inc,))
                out[f"{schema}.{name}"] = cur.fetchone()[0]
        conn.rollback()
        return out
    finally:
        conn.close()


def insert_book(conn, title="new book") -> int:
    with conn.cursor() as cur:
        cur.execute("INSERT INTO books (title) VALUES (%s) RETURNING id", (title,))
        (book_id,) = cur.fetchone()
    conn.commit()
    return book_id


# -- the bug, reproduced and fixed ---------------------------------------------------------------

def test_old_sync_bug_reproduced_then_fixed_by_the_sync(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    staging = connect_db(staging_dsn)
    with pytest.raises(psycopg2.errors.NotNullViolation,
                       match='null value in column "id" of relation "books" violates not-null constraint'):
        insert_book(staging)
    staging.rollback()
    prod_next = next_values(prod_dsn)

    events = []
    result = sync_databases(prod_dsn, staging_dsn, progress=events.append)

    json.dumps(result)  # the Lambda returns it as is
    assert [t["table"] for t in result["tables"]] == [f"public.{t}" for t in TABLES]
    assert result["validation"]["ok"] and all(t["ok"] for t in result["validation"]["tables"])
    assert {t["table"]: t["rows"] for t in result["tables"]} == {
        t["table"]: t["source_rows"] for t in result["validation"]["tables"]}
    assert set(result["timings"]) >= {"guards", "copy", "sequences", "commit", "total"}
    assert [e["event"] for e in events if e["event"] == "table_done"] == ["table_done"] * len(TABLES)
    assert data_fingerprint(staging_dsn) == data_fingerprint(prod_dsn)

    # sequences_reset: the engine's dicts, one per sequence-fed column, each at prod's position.
    reset = {(r["table"], r["column"]): r for r in result["sequences_reset"]}
    assert set(reset) == {("users", "id"), ("authors", "id"), ("books", "id"), ("reviews", "id")}
    for r in reset.values():
        assert r["action"] != "error" and r["sequence"] and r["value"] == prod_next[r["sequence"]]
    assert next_values(staging_dsn) == prod_next
    # Prod's reviews sequence stands past its data (rows were deleted): staging's mirrors it.
    with staging.cursor() as cur:
        cur.execute("SELECT max(id) FROM reviews")
        assert prod_next["public.reviews_id_seq"] > cur.fetchone()[0] + 1

    # INSERTs work, with the ids prod would hand out next; as the API's role too (grants).
    assert insert_book(staging) == prod_next["public.books_id_seq"]
    assert insert_book(staging) == prod_next["public.books_id_seq"] + 1
    with staging.cursor() as cur:
        cur.execute("SET ROLE book_api")
        cur.execute("INSERT INTO reviews (book_id, user_id, rating) VALUES (1, 1, 5) RETURNING id")
        assert cur.fetchone()[0] == prod_next["public.reviews_id_seq"]
        cur.execute("INSERT INTO users (email, display_name) VALUES ('x@example.com', 'x') RETURNING id")
        assert cur.fetchone()[0] == prod_next["public.users_id_seq"]
        cur.execute("RESET ROLE")
        # Identity came back as in prod, serials as serials.
        cur.execute("SELECT attidentity FROM pg_attribute WHERE attrelid = 'reviews'::regclass AND attname = 'id'")
        assert cur.fetchone()[0] == "d"
        cur.execute("SELECT pg_get_serial_sequence('books', 'id')")
        assert cur.fetchone()[0] == "public.books_id_seq"
    staging.commit()


def test_second_sync_mirrors_moved_prod_sequences(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    sync_databases(prod_dsn, staging_dsn)
    prod = connect_db(prod_dsn)
    with prod.cursor() as cur:
        cur.execute("SELECT setval('books_id_seq', 5000)")  # prod handed out ids up to 5000, kept none
        cur.execute("DELETE FROM reviews WHERE id > 100")
    prod.commit()
    result = sync_databases(prod_dsn, staging_dsn)
    assert next_values(staging_dsn) == next_values(prod_dsn)
    assert {r["sequence"]: r["value"] for r in result["sequences_reset"]}["public.books_id_seq"] == 5001
    assert data_fingerprint(staging_dsn) == data_fingerprint(prod_dsn)
    assert not [c for c in result["schema_changes"] if c["action"] == "sequence_created"]  # already there


# -- atomicity ---------------------------------------------------------------------------------

def test_server_error_on_third_table_leaves_old_sync_staging_unchanged(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    staging = connect_db(staging_dsn)
    with staging.cursor() as cur:
        # Only the target refuses some of prod's rows (existing rows are not checked: NOT VALID).
        cur.execute("ALTER TABLE books ADD CONSTRAINT staging_only CHECK (published_year < 1950) NOT VALID")
    staging.commit()
    before = snapshot(staging_dsn)
    events = []
    with pytest.raises(DbSyncError) as err:
        sync_databases(prod_dsn, staging_dsn, progress=events.append)
    msg = str(err.value)
    assert "copying public.books" in msg and "staging_only" in msg and "unchanged" in msg and "\n" not in msg
    assert [e["table"] for e in events if e["event"] == "table_done"] == ["public.authors", "public.book_authors"]
    assert snapshot(staging_dsn) == before  # rows, no sequence created, no default, constraints as they were


def test_killed_target_connection_mid_copy_leaves_target_unchanged(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    sync_databases(prod_dsn, staging_dsn)  # staging now has sequences: they must survive the failure too
    prod = connect_db(prod_dsn)
    with prod.cursor() as cur:
        cur.execute("INSERT INTO books (title, published_year) SELECT 'more ' || i, 1990 FROM generate_series(1, 50) i")
        cur.execute("SELECT setval('users_id_seq', 900)")
    prod.commit()
    staging = connect_db(staging_dsn)
    with staging.cursor() as cur:
        # The target's backend kills itself in the middle of the books COPY (row 20 of the stream).
        cur.execute("CREATE FUNCTION die_at(n int) RETURNS boolean LANGUAGE plpgsql AS $$"
                    " BEGIN IF n = 20 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;"
                    " RETURN true; END $$")
        cur.execute("ALTER TABLE books ADD CONSTRAINT dies CHECK (die_at(id)) NOT VALID")
    staging.commit()
    before = snapshot(staging_dsn)
    with pytest.raises(DbSyncError) as err:
        sync_databases(prod_dsn, staging_dsn)
    msg = str(err.value)
    assert "lost the connection to the target while copying public.books" in msg and "unchanged" in msg
    assert snapshot(staging_dsn) == before


def test_target_terminated_from_another_session_between_tables(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    sync_databases(prod_dsn, staging_dsn)
    prod = connect_db(prod_dsn)
    with prod.cursor() as cur:
        cur.execute("DELETE FROM reviews WHERE id % 2 = 0")
    prod.commit()
    before = snapshot(staging_dsn)
    killer = connect_db(prod_dsn, autocommit=True)

    def kill_target(event):
        if event["event"] == "table_start" and event["index"] == 3:
            with killer.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE datname = %s AND application_name = 'db-sync'",
                            (psycopg2.extensions.parse_dsn(staging_dsn)["dbname"],))

    with pytest.raises(DbSyncError, match="lost the connection to the target"):
        sync_databases(prod_dsn, staging_dsn, progress=kill_target)
    assert snapshot(staging_dsn) == before


def test_source_failure_mid_sync_rolls_back_the_target(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    before = snapshot(staging_dsn)
    killer = connect_db(prod_dsn, autocommit=True)

    def kill_source(event):
        if event["event"] == "table_start" and event["index"] == 2:
            with killer.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
                            " current_database() AND application_name = 'db-sync'")

    with pytest.raises(DbSyncError, match="reading the source failed while copying public.book_authors"):
        sync_databases(prod_dsn, staging_dsn, progress=kill_source)
    assert snapshot(staging_dsn) == before


def test_sequence_error_fails_the_sync_and_rolls_back(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    sync_databases(prod_dsn, staging_dsn)
    prod = connect_db(prod_dsn)
    with prod.cursor() as cur:
        cur.execute("INSERT INTO authors (name) VALUES ('late')")
        # Prod's authors serial is exhausted: its next value is past the integer MAXVALUE.
        cur.execute("SELECT setval('authors_id_seq', 2147483647)")
    prod.commit()
    before = snapshot(staging_dsn)
    with pytest.raises(DbSyncError) as err:
        sync_databases(prod_dsn, staging_dsn)
    msg = str(err.value)
    assert msg.startswith("sequence repair failed, so nothing was committed: authors.id (public.authors_id_seq)")
    assert "2147483648" in msg
    assert snapshot(staging_dsn) == before  # the new author is not there; sequences where they were


# -- guards --------------------------------------------------------------------------------------

def test_second_concurrent_sync_is_refused(prod_and_staging):
    prod_dsn, staging_dsn = prod_and_staging
    inside, release = threading.Event(), threading.Event()
    outcome = {}

    def hold(event):
        if event["event"] == "table_start" and event["index"] == 2:
            inside.set()
            release.wait(30)

    def first():
        try:
            outcome["result"] = sync_databases(prod_dsn, staging_dsn, progress=hold)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    t = threading.Thread(target=first)
    t.start()
    try:
        assert inside.wait(30)
        with pytest.raises(DbSyncError, match="another sync is running against this target"):
            sync_databases(prod_dsn, staging_dsn)
    finally:
        release.set()
        t.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["validation"]["ok"]
    assert data_fingerprint(staging_dsn) == data_fingerprint(prod_dsn)


def test_same_database_reached_another_way_is_refused(pg_server, prod_and_staging):
    prod_dsn, _ = prod_and_staging
    name = psycopg2.extensions.parse_dsn(prod_dsn)["dbname"]
    before = snapshot(prod_dsn)
    ways = ["socket", "127.0.0.1"] + (["::1"] if getattr(pg_server, "has_ipv6", False) else [])
    for src in ways:
        for tgt in ways:
            with pytest.raises(DbSyncError, match="source and target are the same database"):
                sync_databases(pg_server.dsn(name, via=src), pg_server.dsn(name, via=tgt))
    assert snapshot(prod_dsn) == before


def test_a_staging_restored_from_a_prod_snapshot_is_allowed(pg_server, is_local_server, prod_and_staging):
    """A physical copy of prod's server (pg_basebackup, as a restored snapshot) has prod's
    system identifier and its database names, but not its start time: a different database."""
    if not is_local_server:
        pytest.skip("needs the embedded server to clone")
    from localdev.pgserver import LocalServer

    prod_dsn, _ = prod_and_staging
    name = psycopg2.extensions.parse_dsn(prod_dsn)["dbname"]
    clone = LocalServer().start(copy_of=pg_server)
    try:
        restored = clone.dsn(name)
        ids = []
        for dsn in (prod_dsn, restored):
            conn = psycopg2.connect(dsn)
            with conn.cursor() as cur:
                cur.execute("SELECT (pg_control_system()).system_identifier, current_database()")
                ids.append(cur.fetchone())
            conn.close()
        assert ids[0] == ids[1]  # the same cluster identity and database name
        with psycopg2.connect(prod_dsn) as conn, conn.cursor() as cur:
            cur.execute("INSERT INTO books (title) VALUES ('only in prod')")
        result = sync_databases(prod_dsn, restored)
        assert result["validation"]["ok"]
        assert data_fingerprint(restored) == data_fingerprint(prod_dsn)
    finally:
        clone.stop()


def test_target_not_in_allowlist_is_refused_and_listed_one_allowed(pg_server, prod_and_staging):
    prod_dsn, staging_dsn = prod_and_staging
    staging_name = psycopg2.extensions.parse_dsn(staging_dsn)["dbname"]
    before = snapshot(staging_dsn)
    for allow in ("prod-db.example.com/" + staging_name, "some_other_db", f"otherhost/{staging_name}"):
        with pytest.raises(DbSyncError, match="is not in SYNC_TARGET_ALLOWLIST"):
            sync_databases(prod_dsn, pg_server.dsn(staging_name, via="127.0.0.1"), allowlist=allow)
    assert snapshot(staging_dsn) == before
    result = sync_databases(prod_dsn, pg_server.dsn(staging_name, via="127.0.0.1"),
                            allowlist=f"other, 127.0.0.1/{staging_name}")
    assert result["validation"]["ok"]
    assert sync_databases(prod_dsn, staging_dsn, allowlist=staging_name)["validation"]["ok"]


def test_allowlist_from_the_caller_and_from_the_environment_at_the_edge(monkeypatch, prod_and_staging, capsys):
    """The engine takes the allow-list it is given; the CLI gives it SYNC_TARGET_ALLOWLIST."""
    from dbsync.cli import main

    prod_dsn, staging_dsn = prod_and_staging
    with pytest.raises(DbSyncError, match="SYNC_TARGET_ALLOWLIST.*add the entry"):
        sync_databases(prod_dsn, staging_dsn, allowlist="staging.internal/staging")
    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", "staging.internal/staging")
    sync_databases(prod_dsn, staging_dsn)  # the engine reads no environment: local, so allowed
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn]) == 2
    assert "not in SYNC_TARGET_ALLOWLIST" in capsys.readouterr().err


def test_lock_timeout_on_a_busy_target_fails_cleanly(prod_and_staging, connect_db, monkeypatch):
    prod_dsn, staging_dsn = prod_and_staging
    before = snapshot(staging_dsn)
    reader = connect_db(staging_dsn)
    with reader.cursor() as cur:
        cur.execute("SELECT count(*) FROM reviews")  # an open transaction holding a lock on reviews
    with pytest.raises(DbSyncError, match=r"timed out waiting for a lock on the target .*LOCK_TIMEOUT") as caught:
        sync_databases(prod_dsn, staging_dsn, lock_timeout="300ms")
    assert (caught.value.sqlstate, caught.value.side, caught.value.kind) == ("55P03", "target", "lock_not_available")
    reader.rollback()
    assert snapshot(staging_dsn) == before


def test_lock_table_estimate_refuses_naming_the_setting(prod_and_staging, monkeypatch):
    from dbsync.catalog import privileges

    prod_dsn, staging_dsn = prod_and_staging
    conn = psycopg2.connect(staging_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT oid FROM pg_class WHERE relname IN ('books', 'reviews')")
            oids = [r[0] for r in cur.fetchall()]
            # books: table, pkey, isbn key, owner index, TOAST table + index; reviews: table, pkey,
            # book index, TOAST table + index (no sequences yet on the old-sync staging)
            assert privileges.locks_needed(cur, oids, writing=True) == 6 + 5
            capacity, how = privileges.lock_capacity(cur), privileges.lock_settings(cur)
            cur.execute("SELECT current_setting('max_locks_per_transaction')::int")
            assert capacity >= cur.fetchone()[0] and "max_locks_per_transaction=" in how
    finally:
        conn.close()
    before = snapshot(staging_dsn)
    # A server whose lock table is too small for this schema (the real one would need thousands of
    # tables to overflow; the estimate is real, only the capacity is shrunk).
    monkeypatch.setattr(privileges, "lock_capacity", lambda cur: 20)
    with pytest.raises(DbSyncError, match=r"raise max_locks_per_transaction on the target"):
        sync_databases(prod_dsn, staging_dsn)
    assert snapshot(staging_dsn) == before


def test_target_tables_not_owned_by_the_sync_role_are_refused(pg_server, prod_and_staging):
    prod_dsn, staging_dsn = prod_and_staging
    not_owner = login_role(pg_server, staging_dsn, "dbsync_not_owner")
    execute(staging_dsn, "GRANT ALL ON ALL TABLES IN SCHEMA public TO dbsync_not_owner")
    before = snapshot(staging_dsn)
    with pytest.raises(DbSyncError) as err:
        sync_databases(prod_dsn, not_owner)
    msg = str(err.value)
    assert "the target role dbsync_not_owner does not own table public.authors (owner postgres)" in msg
    assert "connect as their owner" in msg
    assert snapshot(staging_dsn) == before


def test_schema_drift_is_reported_before_any_write(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    staging = connect_db(staging_dsn)
    with staging.cursor() as cur:
        cur.execute("ALTER TABLE books DROP COLUMN metadata")
        cur.execute("ALTER TABLE users ALTER COLUMN display_name TYPE varchar(10)")
        cur.execute("DROP TABLE book_authors")
        cur.execute("ALTER TABLE authors ADD COLUMN nickname text NOT NULL DEFAULT 'x'")  # harmless
        cur.execute("ALTER TABLE authors ADD COLUMN required_here text NOT NULL DEFAULT 'y'")
        cur.execute("ALTER TABLE authors ALTER COLUMN required_here DROP DEFAULT")
    staging.commit()
    before = snapshot(staging_dsn)
    with pytest.raises(DbSyncError) as err:
        sync_databases(prod_dsn, staging_dsn, schema_drift="refuse")  # tolerated by default: test_sync_drift.py
    msg = str(err.value)
    assert "nothing was written" in msg and "(4 differences)" in msg
    assert "table public.book_authors is missing on the target" in msg
    assert "column public.books.metadata is missing on the target" in msg
    assert "column public.users.display_name is text on the source but character varying(10) on the target" in msg
    assert "public.authors.required_here exists only on the target and is NOT NULL without a default" in msg
    assert "nickname" not in msg
    assert snapshot(staging_dsn) == before


def test_table_subset_with_foreign_keys_from_outside_is_refused(prod_and_staging):
    prod_dsn, staging_dsn = prod_and_staging
    before = snapshot(staging_dsn)
    with pytest.raises(DbSyncError) as err:
        sync_databases(prod_dsn, staging_dsn, tables=["books", "public.users"])
    msg = str(err.value)
    assert "public.book_authors (book_authors_book_id_fkey) references public.books" in msg
    assert "public.reviews (reviews_book_id_fkey) references public.books" in msg
    assert "public.reviews (reviews_user_id_fkey) references public.users" in msg
    assert snapshot(staging_dsn) == before
    with pytest.raises(DbSyncError, match="table 'nope' does not exist on the source"):
        sync_databases(prod_dsn, staging_dsn, tables=["nope"])


def test_table_subset_syncs_only_those_tables(prod_and_staging, connect_db):
    prod_dsn, staging_dsn = prod_and_staging
    sync_databases(prod_dsn, staging_dsn)
    prod, staging = connect_db(prod_dsn), connect_db(staging_dsn)
    with prod.cursor() as cur:
        cur.execute("DELETE FROM reviews WHERE rating = 1")
        cur.execute("UPDATE authors SET name = upper(name)")
    prod.commit()
    with staging.cursor() as cur:
        # Staging handed out user ids beyond its data, and has a table of its own ahead of its rows:
        # a sync of other tables must not move those sequences back.
        cur.execute("SELECT setval('users_id_seq', 7777)")
        cur.execute("CREATE TABLE staging_notes (id serial PRIMARY KEY, note text)")
        cur.execute("INSERT INTO staging_notes (note) VALUES ('a'), ('b')")
        cur.execute("SELECT setval('staging_notes_id_seq', 50)")
    staging.commit()
    result = sync_databases(prod_dsn, staging_dsn, tables=["reviews"])
    assert [t["table"] for t in result["tables"]] == ["public.reviews"]
    p, s = data_fingerprint(prod_dsn), data_fingerprint(staging_dsn)
    assert s["rows public.reviews"] == p["rows public.reviews"]
    assert s["rows public.authors"] != p["rows public.authors"]  # not synced
    after = next_values(staging_dsn)
    assert after["public.users_id_seq"] == 7778 and after["public.staging_notes_id_seq"] == 51
    assert after["public.reviews_id_seq"] == next_values(prod_dsn)["public.reviews_id_seq"]


def test_dry_run_changes_nothing(prod_and_staging):
    prod_dsn, staging_dsn = prod_and_staging
    before = snapshot(staging_dsn)
    result = sync_databases(prod_dsn, staging_dsn, dry_run=True)
    json.dumps(result)
    assert result["dry_run"] and [t["table"] for t in result["tables"]] == [f"public.{t}" for t in TABLES]
    assert result["source_positions"]["public.books_id_seq"] == next_values(prod_dsn)["public.books_id_seq"]
    assert snapshot(staging_dsn) == before


# -- faithful copy on harder schemas -------------------------------------------------------------

EDGE_SCHEMA = """
CREATE SCHEMA "Odd Schema";
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE shared_ids START 1000;
CREATE TABLE "Odd Schema"."Mixed Case" (
    "Id" integer GENERATED ALWAYS AS IDENTITY (START 10 INCREMENT 5) PRIMARY KEY,
    "select" text,
    feeling mood,
    tags text[],
    raw bytea,
    amount numeric(12, 3),
    doubled numeric GENERATED ALWAYS AS (amount * 2) STORED
);
CREATE TABLE parent_a (id bigint DEFAULT nextval('shared_ids') PRIMARY KEY, note text);
CREATE TABLE parent_b (id bigint DEFAULT nextval('shared_ids') PRIMARY KEY, a_id bigint REFERENCES parent_a);
CREATE TABLE down_counter (id integer PRIMARY KEY, v text);
CREATE SEQUENCE down_seq INCREMENT -1 MINVALUE -1000 MAXVALUE -1 START -1 OWNED BY down_counter.id;
ALTER TABLE down_counter ALTER COLUMN id SET DEFAULT nextval('down_seq');
CREATE TABLE events (id bigserial, at date NOT NULL, payload jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE event_notes (event_id bigint, event_at date, note text,
                          FOREIGN KEY (event_id, event_at) REFERENCES events);
"""

EDGE_DATA = r"""
INSERT INTO "Odd Schema"."Mixed Case" ("select", feeling, tags, raw, amount)
SELECT CASE WHEN i % 3 = 0 THEN NULL ELSE E'tab\there\nnewline \\ backslash "q" ' || i END,
       (ARRAY['sad','ok','happy'])[1 + i % 3]::mood, ARRAY['a' || i, NULL, 'c,d'], decode(md5(i::text), 'hex'),
       i * 1.125
FROM generate_series(1, 40) i;
INSERT INTO parent_a (note) SELECT 'a' || i FROM generate_series(1, 10) i;
INSERT INTO parent_b (a_id) SELECT id FROM parent_a;
INSERT INTO down_counter (v) SELECT 'v' || i FROM generate_series(1, 7) i;
INSERT INTO events (at, payload)
SELECT DATE '2024-06-01' + i * 5, jsonb_build_object('i', i) FROM generate_series(1, 60) i;
INSERT INTO event_notes SELECT id, at, 'note' FROM events WHERE id % 4 = 0;
DELETE FROM parent_b WHERE id = (SELECT max(id) FROM parent_b);
"""


def test_faithful_copy_of_an_edge_case_schema(make_db, connect_db):
    prod_dsn, staging_dsn = make_db("eprod"), make_db("estaging")
    prod = connect_db(prod_dsn)
    with prod.cursor() as cur:
        cur.execute(EDGE_SCHEMA)
        cur.execute(EDGE_DATA)
    prod.commit()
    staging = connect_db(staging_dsn)
    old_sync_copy(prod_dsn, staging_dsn)
    with staging.cursor() as cur:
        # A staging-only trigger that would rewrite rows: the load must not fire it.
        cur.execute("CREATE FUNCTION scramble() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN NEW.note := 'scrambled'; RETURN NEW; END $$")
        cur.execute("CREATE TRIGGER scramble BEFORE INSERT ON parent_a FOR EACH ROW EXECUTE FUNCTION scramble()")
        cur.execute("ALTER TABLE parent_a ENABLE ALWAYS TRIGGER scramble")
    staging.commit()
    triggers_before = snapshot(staging_dsn)["triggers"]

    result = sync_databases(prod_dsn, staging_dsn)

    assert data_fingerprint(staging_dsn) == data_fingerprint(prod_dsn)
    assert snapshot(staging_dsn)["triggers"] == triggers_before  # re-enabled in its original mode
    formats = {t["table"]: t["format"] for t in result["tables"]}
    assert formats['"Odd Schema"."Mixed Case"'] == "text"  # a user type (enum): no binary
    assert formats["public.parent_a"] == "binary"
    assert "public.events" in formats and "public.events_2024" not in formats  # via the partitioned parent
    assert next_values(staging_dsn) == next_values(prod_dsn)
    with staging.cursor() as cur:
        cur.execute('INSERT INTO "Odd Schema"."Mixed Case" ("select") VALUES (\'new\') RETURNING "Id", doubled')
        assert cur.fetchone()[0] == next_values(prod_dsn)['Odd Schema.Mixed Case_Id_seq']
        cur.execute("INSERT INTO parent_a (note) VALUES ('n') RETURNING id, note")
        a_id, note = cur.fetchone()
        cur.execute("INSERT INTO parent_b (a_id) VALUES (%s) RETURNING id", (a_id,))
        assert cur.fetchone()[0] == a_id + 1 and note == "scrambled"  # the trigger is back for normal use
        cur.execute("INSERT INTO down_counter (v) VALUES ('n') RETURNING id")
        assert cur.fetchone()[0] == -8
        cur.execute("INSERT INTO events (at) VALUES ('2025-03-01') RETURNING id")
        assert cur.fetchone()[0] == 61
        cur.execute("SELECT attidentity FROM pg_attribute WHERE attrelid = '\"Odd Schema\".\"Mixed Case\"'::regclass"
                    " AND attname = 'Id'")
        assert cur.fetchone()[0] == "a"
        # Foreign keys are back and enforced.
        with pytest.raises(psycopg2.errors.ForeignKeyViolation):
            cur.execute("INSERT INTO parent_b (a_id) VALUES (-42)")
    staging.rollback()
    constraints = {(r[0], r[1]) for r in snapshot(staging_dsn)["constraints"]}
    assert ("parent_b", "parent_b_a_id_fkey") in constraints
    assert ("event_notes", "event_notes_event_id_event_at_fkey") in constraints


def schema_fingerprint(dsn: str) -> dict:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            return {
                "indexes": run(cur, "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid), indisclustered,"
                                    " indisreplident, obj_description(indexrelid, 'pg_class') FROM pg_index"
                                    " WHERE indrelid::regclass::text NOT LIKE 'pg\\_%%' ORDER BY 1"),
                "constraints": run(cur, "SELECT conrelid::regclass::text, conname, contype,"
                                        " pg_get_constraintdef(oid), obj_description(oid, 'pg_constraint')"
                                        " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
                                        " ORDER BY 1, 2"),
                "columns": run(cur, "SELECT attrelid::regclass::text, attname, attnotnull, atttypid, attidentity"
                                    " FROM pg_attribute WHERE attnum > 0 AND attrelid IN (SELECT oid FROM pg_class"
                                    " WHERE relnamespace = 'public'::regnamespace) ORDER BY 1, 2"),
                "tables": run(cur, "SELECT relname, relreplident FROM pg_class"
                                   " WHERE relnamespace = 'public'::regnamespace ORDER BY 1"),
            }
    finally:
        conn.close()


def test_a_sync_keeps_the_targets_indexes_and_constraints_exactly(prod_and_staging, connect_db):
    """Indexes and foreign keys are set aside for the load and rebuilt: same names, definitions,
    comments, CLUSTER and REPLICA IDENTITY markers afterwards."""
    prod_dsn, staging_dsn = prod_and_staging
    sync_databases(prod_dsn, staging_dsn)
    staging = connect_db(staging_dsn)
    with staging.cursor() as cur:
        cur.execute("ALTER INDEX books_pkey RENAME TO books_pk_renamed")
        cur.execute("COMMENT ON INDEX books_owner_id_idx IS 'owner lookups'")
        cur.execute("COMMENT ON CONSTRAINT reviews_book_id_fkey ON reviews IS 'fk comment'")
        cur.execute("CLUSTER reviews USING reviews_book_id_idx")
        cur.execute("ALTER TABLE users REPLICA IDENTITY USING INDEX users_email_key")
        cur.execute("CREATE INDEX books_lower_title ON books (lower(title)) WHERE published_year > 1950")
    staging.commit()
    before = schema_fingerprint(staging_dsn)
    result = sync_databases(prod_dsn, staging_dsn)
    assert schema_fingerprint(staging_dsn) == before
    assert data_fingerprint(staging_dsn) == data_fingerprint(prod_dsn)
    assert result["schema_changes"] == []
    # users: pkey, email key; authors: pkey; books: pkey, isbn key, owner idx, lower(title);
    # book_authors: pkey, author idx; reviews: pkey, book idx; schema_migrations: pkey
    assert result["set_aside"] == {"triggers": 0, "foreign_keys": 5, "indexes": 12}
    with staging.cursor() as cur, pytest.raises(psycopg2.errors.UniqueViolation):
        cur.execute("INSERT INTO users (id, email, display_name) VALUES (1, 'dup@example.com', 'dup')")


# -- review findings: row security, non-integer sequences, sequence alignment, text COPY ----------

def execute(dsn: str, *statements: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
    finally:
        conn.close()


def fetch(dsn: str, query: str) -> list:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3")
            return run(cur, query)
    finally:
        conn.close()


def login_role(pg_server, dsn: str, role: str) -> str:
    """A LOGIN role with a password (a TEST_DATABASE_URL server may demand one); returns a DSN
    for dsn's database as that role."""
    execute(dsn,
            sql.SQL("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN"
                    " CREATE ROLE {role} LOGIN; END IF; END$$").format(name=sql.Literal(role),
                                                                        role=sql.Identifier(role)),
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(role + "-pw")))
    return pg_server.dsn(psycopg2.extensions.parse_dsn(dsn)["dbname"], user=role, password=role + "-pw")


def test_source_rows_hidden_by_row_security_fail_the_sync(pg_server, make_db):
    """A source role that RLS policies apply to would copy only the rows it may see; the sync
    refuses instead, naming the table, and writes nothing."""
    src, tgt = make_db("rls_src"), make_db("rls_tgt")
    reader = login_role(pg_server, src, "dbsync_rls_reader")
    execute(src, "CREATE TABLE t (id serial PRIMARY KEY, tenant text)",
            "INSERT INTO t (tenant) SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 10) g",
            "CREATE TABLE open_t (id int PRIMARY KEY)",
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY", "CREATE POLICY only_b ON t USING (tenant = 'b')",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO dbsync_rls_reader",
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO dbsync_rls_reader")
    execute(tgt, "CREATE TABLE t (id serial PRIMARY KEY, tenant text)", "CREATE TABLE open_t (id int PRIMARY KEY)",
            "INSERT INTO t (tenant) VALUES ('old')")
    before = snapshot(tgt)
    with pytest.raises(DbSyncError) as err:
        sync_databases(reader, tgt)
    msg = str(err.value)
    assert "\n" not in msg
    assert "public.t" in msg and "row-level security" in msg and "BYPASSRLS" in msg and "open_t" not in msg
    assert snapshot(tgt) == before
    # The table's owner (here a superuser) bypasses the policy: every row arrives.
    sync_databases(src, tgt)
    assert fetch(tgt, "SELECT count(*) FROM t") == [(10,)]


def test_target_forcing_row_security_on_its_owner_is_refused_clearly(pg_server, make_db):
    src, tgt = make_db("rlsf_src"), make_db("rlsf_tgt")
    owner = login_role(pg_server, tgt, "dbsync_rls_owner")
    execute(src, "CREATE TABLE t (id int PRIMARY KEY, tenant text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    execute(tgt, "CREATE TABLE t (id int PRIMARY KEY, tenant text)", "INSERT INTO t VALUES (7, 'b')",
            "ALTER TABLE t OWNER TO dbsync_rls_owner",
            "ALTER TABLE t ENABLE ROW LEVEL SECURITY", "ALTER TABLE t FORCE ROW LEVEL SECURITY",
            "CREATE POLICY only_b ON t USING (tenant = 'b')")
    before = snapshot(tgt)
    with pytest.raises(DbSyncError) as err:
        sync_databases(src, owner)
    msg = str(err.value)
    assert "public.t" in msg and "row-level security" in msg and "NO FORCE ROW LEVEL SECURITY" in msg
    assert snapshot(tgt) == before


def test_sequence_feeding_a_text_column_mirrors_the_source(make_db):
    ddl = ("CREATE SEQUENCE code_seq",
           "CREATE TABLE t (id serial PRIMARY KEY, code text UNIQUE DEFAULT 'X' || nextval('code_seq'))")
    src, tgt = make_db("txtseq_src"), make_db("txtseq_tgt")
    execute(src, *ddl, "INSERT INTO t DEFAULT VALUES", "INSERT INTO t DEFAULT VALUES", "INSERT INTO t DEFAULT VALUES")
    execute(tgt, *ddl)
    result = sync_databases(src, tgt)
    assert next_values(tgt) == next_values(src)
    entry = [r for r in result["sequences_reset"] if r["sequence"] == "public.code_seq"]
    assert entry == [{"schema": "public", "table": "t", "column": "code", "sequence": "public.code_seq",
                      "kind": "default", "previous": 1, "value": 4, "action": "reset", "error": None,
                      "note": "not a number column: the source's position, no data floor"}]
    execute(tgt, "INSERT INTO t DEFAULT VALUES")
    assert fetch(tgt, "SELECT code FROM t ORDER BY id DESC LIMIT 1") == [("X4",)]


def test_text_fed_sequence_missing_on_the_target_is_created_at_the_sources_position(make_db):
    src, tgt = make_db("txtseq2_src"), make_db("txtseq2_tgt")
    execute(src, "CREATE SEQUENCE code_seq START 100 INCREMENT 10",
            "CREATE TABLE t (code text PRIMARY KEY DEFAULT 'C' || nextval('code_seq'), n int)",
            "INSERT INTO t (n) VALUES (1), (2)")
    execute(tgt, "CREATE TABLE t (code text PRIMARY KEY, n int)")  # as the old sync left it
    result = sync_databases(src, tgt)
    assert {c["action"] for c in result["schema_changes"]} == {"sequence_created", "default_restored"}
    execute(tgt, "INSERT INTO t (n) VALUES (3)")
    assert fetch(tgt, "SELECT code FROM t WHERE n = 3") == [("C120",)]


def test_exhausted_text_fed_sequence_fails_the_sync_and_changes_nothing(make_db):
    ddl = ("CREATE SEQUENCE code_seq MAXVALUE 3",
           "CREATE TABLE t (code text PRIMARY KEY DEFAULT 'C' || nextval('code_seq'), n int)")
    src, tgt = make_db("txtseq3_src"), make_db("txtseq3_tgt")
    execute(src, *ddl, "INSERT INTO t (n) VALUES (1), (2), (3)")
    execute(tgt, *ddl, "INSERT INTO t (n) VALUES (9)")
    before = snapshot(tgt)
    with pytest.raises(DbSyncError, match=r"public\.code_seq.*MAXVALUE 3"):
        sync_databases(src, tgt)
    assert snapshot(tgt) == before


@pytest.mark.parametrize("source_ddl, target_ddl", [
    ("CREATE TABLE t (id serial PRIMARY KEY, v int)",
     "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int)"),
    ("CREATE TABLE t (id int GENERATED BY DEFAULT AS IDENTITY (START 100 INCREMENT 5) PRIMARY KEY, v int)",
     "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int)"),
], ids=["serial-over-identity", "identity-options"])
def test_identity_on_the_target_gets_the_sources_sequence(make_db, source_ddl, target_ddl):
    src, tgt = make_db("ident_src"), make_db("ident_tgt")
    execute(src, source_ddl, "INSERT INTO t (v) SELECT g FROM generate_series(1, 3) g")
    execute(tgt, target_ddl)
    sync_databases(src, tgt)
    definition = ("SELECT attidentity, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,"
                  " format_type(s.seqtypid, NULL) FROM pg_attribute a, pg_sequence s"
                  " WHERE a.attrelid = 't'::regclass AND a.attname = 'id'"
                  " AND s.seqrelid = pg_get_serial_sequence('t', 'id')::regclass")
    assert fetch(tgt, definition) == fetch(src, definition)
    assert next_values(tgt) == next_values(src)
    execute(src, "INSERT INTO t (v) VALUES (0)")
    execute(tgt, "INSERT INTO t (v) VALUES (0)")
    assert fetch(tgt, "SELECT * FROM t ORDER BY id") == fetch(src, "SELECT * FROM t ORDER BY id")


@pytest.mark.parametrize("source_seq, target_seq, target_position", [
    ("CREATE SEQUENCE s MINVALUE 1000 START 1000", "CREATE SEQUENCE s", None),
    ("CREATE SEQUENCE s INCREMENT -1", "CREATE SEQUENCE s", None),
    ("CREATE SEQUENCE s AS integer", "CREATE SEQUENCE s AS bigint", 3000000000),
], ids=["minvalue-raised", "descending", "narrower-type"])
def test_existing_sequence_outside_the_sources_bounds_is_aligned(make_db, source_seq, target_seq, target_position):
    src, tgt = make_db("bounds_src"), make_db("bounds_tgt")
    table = "CREATE TABLE t (id bigint PRIMARY KEY DEFAULT nextval('s'))"
    execute(src, source_seq, table, "INSERT INTO t DEFAULT VALUES", "INSERT INTO t DEFAULT VALUES")
    execute(tgt, target_seq, table, "INSERT INTO t DEFAULT VALUES")
    if target_position:
        execute(tgt, f"SELECT setval('s', {target_position})")
    result = sync_databases(src, tgt)
    assert [c["action"] for c in result["schema_changes"]] == ["sequence_altered"]
    definition = ("SELECT sequencename, data_type, start_value, min_value, max_value, increment_by, cycle,"
                  " cache_size FROM pg_sequences")
    assert fetch(tgt, definition) == fetch(src, definition)
    assert next_values(tgt) == next_values(src)
    execute(src, "INSERT INTO t DEFAULT VALUES")
    execute(tgt, "INSERT INTO t DEFAULT VALUES")
    assert fetch(tgt, "SELECT * FROM t ORDER BY id") == fetch(src, "SELECT * FROM t ORDER BY id")


def test_text_copy_ignores_the_sources_session_defaults(make_db):
    """A source database whose defaults make text output lossy or ambiguous (DMY dates, 15-digit
    floats, SQL-standard intervals) still arrives exactly: the sync sets pg_dump's settings."""
    ddl = ("CREATE TYPE mood AS ENUM ('ok', 'sad')",  # a user type: the table travels as text
           "CREATE TABLE t (id int PRIMARY KEY, m mood, d date, f float8, ts timestamp, iv interval, r real)")
    src, tgt = make_db("style_src"), make_db("style_tgt")
    execute(src, *ddl, "INSERT INTO t VALUES (1, 'ok', '2024-01-02', 0.1 + 0.2, '2024-03-04 05:06:07.123456',"
                       " '1 day 2 hours', 1/3.0),"
                       " (2, 'sad', '2024-12-31', 1/3.0::float8, '2024-12-31 23:59:59', '-1 mon 3 days', 0.1)")
    execute(tgt, *ddl)
    name = psycopg2.extensions.parse_dsn(src)["dbname"]
    execute(src, f'ALTER DATABASE "{name}" SET DateStyle = \'SQL, DMY\'',
            f'ALTER DATABASE "{name}" SET extra_float_digits = 0',
            f'ALTER DATABASE "{name}" SET IntervalStyle = sql_standard')
    result = sync_databases(src, tgt)
    assert [t["format"] for t in result["tables"]] == ["text"]
    query = "SELECT t::text FROM t ORDER BY id"
    assert fetch(tgt, query) == fetch(src, query)


def test_source_in_another_encoding_arrives_converted(pg_server, make_db):
    src, tgt = make_db("enc_src"), make_db("enc_tgt")
    name = psycopg2.extensions.parse_dsn(src)["dbname"]
    admin = pg_server.dsn("postgres")
    execute(admin, f'DROP DATABASE "{name}"',
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
    conn = psycopg2.connect(src)
    conn.set_client_encoding("UTF8")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id int PRIMARY KEY, s text, m text[])")
        cur.execute("INSERT INTO t VALUES (1, 'café ñ', ARRAY['é'])")
    conn.commit()
    conn.close()
    execute(tgt, "CREATE TABLE t (id int PRIMARY KEY, s text, m text[])")
    sync_databases(src, tgt)
    assert fetch(tgt, "SELECT s, m FROM t") == [("café ñ", ["é"])]


def test_source_encoding_without_a_conversion_to_utf8_is_refused(pg_server, make_db):
    src, tgt = make_db("mule_src"), make_db("mule_tgt")
    name = psycopg2.extensions.parse_dsn(src)["dbname"]
    execute(pg_server.dsn("postgres"), f'DROP DATABASE "{name}"',
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'MULE_INTERNAL' LC_COLLATE 'C' LC_CTYPE 'C'")
    # psycopg2 has no codec for MULE_INTERNAL: connect in LATIN1, which the server converts.
    src = psycopg2.extensions.make_dsn(src, client_encoding="LATIN1")
    execute(src, "CREATE TABLE t (id int PRIMARY KEY)")
    execute(tgt, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (5)")
    with pytest.raises(DbSyncError, match=r"^the source database's encoding MULE_INTERNAL has no conversion to UTF8"):
        sync_databases(src, tgt)
    assert fetch(tgt, "SELECT * FROM t") == [(5,)]
