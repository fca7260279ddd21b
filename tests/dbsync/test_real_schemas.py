"""Real applications' schemas (Rails db/structure.sql files kept outside this repository, in
DBSYNC_SCHEMA_DIR, default ../shared/schemas): each loaded into prod and two stagings, prod filled
with rows satisfying every constraint, synced in full; then three nights of foreign-key-consistent
changes, each synced incrementally into one staging and in full into the other, all three ending
identical. Run with -s to see the figures (load, fill, sync times, modes per night).

The harness itself (tests/support/realschema.py) is checked first on a small schema written here
with each kind of constraint it must satisfy."""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter

import pytest

from dbsync.cli import main as db_sync
from dbsync.sync import sync_databases
from dbsync.verify import verify_databases
from tests.support import realschema
from tests.support.db import query

ROWS = 10
NIGHT_FRACTION = 0.05  # about half the tables get a change each night at 10 rows a table
NIGHTS = 3

KINDS = (
    "CREATE TYPE mood AS ENUM ('calm', 'busy')",
    "CREATE TABLE orgs (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, owner_id bigint)",
    "CREATE TABLE people (id bigint PRIMARY KEY, org_id bigint NOT NULL REFERENCES orgs ON DELETE CASCADE,"
    " manager_id bigint REFERENCES people, mood mood NOT NULL, email varchar(12) NOT NULL,"
    " CHECK (char_length(email) >= 5))",
    "ALTER TABLE orgs ADD FOREIGN KEY (owner_id) REFERENCES people",  # a cycle through a nullable key
    "CREATE TABLE projects (id bigserial PRIMARY KEY, org_id bigint NOT NULL REFERENCES orgs ON DELETE CASCADE,"
    " iid int NOT NULL, UNIQUE (org_id, iid))",
    "CREATE TABLE issues (id bigserial PRIMARY KEY, org_id bigint NOT NULL, iid int NOT NULL,"
    " project_id bigint REFERENCES projects, group_id bigint REFERENCES orgs,"
    " state smallint NOT NULL CHECK (state IN (3, 5, 7)), FOREIGN KEY (org_id, iid) REFERENCES projects (org_id, iid),"
    " CHECK (num_nonnulls(project_id, group_id) = 1))",
    "CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL,"
    " person_id bigint REFERENCES people ON DELETE SET NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
    "CREATE TABLE events_old PARTITION OF events FOR VALUES FROM (MINVALUE) TO ('2020-01-01')",
    "CREATE TABLE events_2030 PARTITION OF events FOR VALUES FROM ('2030-01-01') TO ('2031-01-01')",
    "CREATE TABLE builds (id bigint NOT NULL, partition_id int NOT NULL, name text, PRIMARY KEY (id, partition_id))"
    " PARTITION BY LIST (partition_id)",
    "CREATE TABLE builds_100 PARTITION OF builds FOR VALUES IN (100)",
    "CREATE TABLE builds_101 PARTITION OF builds FOR VALUES IN (101) PARTITION BY HASH (id)",
    "CREATE TABLE builds_101_0 PARTITION OF builds_101 FOR VALUES WITH (modulus 2, remainder 0)",
    "CREATE TABLE builds_101_1 PARTITION OF builds_101 FOR VALUES WITH (modulus 2, remainder 1)",
    "CREATE TABLE build_notes (id bigserial PRIMARY KEY, build_id bigint NOT NULL, partition_id int NOT NULL,"
    " FOREIGN KEY (build_id, partition_id) REFERENCES builds (id, partition_id) ON DELETE CASCADE)",
)


def _count(dsn: str, table: str) -> int:
    return query(dsn, f"SELECT count(*) FROM {table}")[0][0]  # noqa: S608 - the test's own table names


def test_the_harness_satisfies_every_kind_of_constraint(make_db, tmp_path):
    dsn = make_db("kinds")
    schema = tmp_path / "structure.sql"
    schema.write_text("CREATE EXTENSION IF NOT EXISTS no_such_extension;\n" + ";\n".join(KINDS) + ";\n")
    loaded = realschema.load_schema(dsn, schema)
    assert loaded.skipped_extensions == ["no_such_extension"] and loaded.errors == []
    filled = realschema.fill(dsn, rows_per_table=ROWS, seed=3)
    assert filled.shortfalls() == {}
    assert filled.rows == 7 * ROWS  # partitions filled through their roots
    for table in ("events_old", "events_2030", "builds_100", "builds_101_0", "builds_101_1"):
        assert _count(dsn, table) > 0, f"{table}: every partition gets rows"
    assert filled.second_pass > 0  # the cycle's keys, NULL at insert, point at parents afterwards
    assert _count(dsn, "orgs WHERE owner_id IS NOT NULL") > 0
    assert _count(dsn, "issues WHERE state IN (3, 5, 7) AND num_nonnulls(project_id, group_id) = 1") == ROWS
    before = realschema.content(dsn)
    night = realschema.change_night(dsn, fraction=0.3, seed=1)
    assert night.updated and night.inserted and night.deleted and night.refused == {}
    assert realschema.content(dsn) != before


SCHEMAS = realschema.available_schemas()
NO_SCHEMAS = pytest.param(None, marks=pytest.mark.skip(
    reason=f"no real schemas in {realschema.schema_dir()} (set {realschema.SCHEMA_DIR_VAR} to a folder of"
           " <app>/structure.sql)"))


def _timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def _databases(make_db, stack: contextlib.ExitStack) -> dict[str, str]:
    """prod and two stagings: on a server of their own with room for a big schema's locks, or on
    TEST_DATABASE_URL's server as it is configured."""
    roles = ("prod", "inc", "full")
    if os.environ.get("TEST_DATABASE_URL"):
        return {role: make_db(role) for role in roles}
    server = stack.enter_context(realschema.roomy_server())
    return {role: realschema.create_database(server, role) for role in roles}


def _prepare(dsns: dict[str, str], structure):
    """prod loaded and filled; the two stagings with the schema only."""
    loads = {role: realschema.load_schema(dsn, structure) for role, dsn in dsns.items()}
    load = loads["prod"]
    print(f"\n{structure.parent.name}: load {load.seconds:.1f}s, skipped extensions {load.skipped_extensions},"
          f" {len(load.errors)} statements refused {load.errors[:3]}")
    filled = realschema.fill(dsns["prod"], rows_per_table=ROWS, seed=16)
    short = filled.shortfalls()
    print(f"fill {filled.seconds:.1f}s: {filled.rows} rows in {len(filled.tables)} tables, {len(short)} short,"
          f" {filled.second_pass} cycle keys set afterwards")
    for table, why in sorted(short.items()):
        print(f"  short {table} {why}")
    return dsns, filled


@pytest.mark.slow
@pytest.mark.pg
@pytest.mark.parametrize("structure", SCHEMAS or [NO_SCHEMAS], ids=lambda p: p.parent.name if p else "none")
def test_a_real_schema_synced_in_full_then_three_incremental_nights(make_db, structure):
    with contextlib.ExitStack() as stack:
        _full_then_nights(*_prepare(_databases(make_db, stack), structure))


def _full_then_nights(dsns: dict[str, str], filled: realschema.FillReport) -> None:
    prod, inc, full = dsns["prod"], dsns["inc"], dsns["full"]
    assert len(filled.shortfalls()) <= len(filled.tables) // 10, "the harness fills nearly every table"
    # Issue 16: a healthy prod (every id fed as the application feeds it) passes check-sequences.
    assert db_sync(["check-sequences", "--dsn", prod]) == 0
    for staging in (inc, full):
        _, seconds = _timed(sync_databases, prod, staging)
        print(f"full sync {seconds:.1f}s")
        assert realschema.differences(realschema.content(prod), realschema.content(staging)) == []
        assert realschema.differences(realschema.sequence_positions(prod), realschema.sequence_positions(staging)) == []
        # Prod decides who is fed: staging ends with prod's defaults, identities and ownerships.
        assert db_sync(["check-sequences", "--dsn", staging, "--source", prod]) == 0
        assert feeding(staging) == feeding(prod)
    failures = []
    for night in range(1, NIGHTS + 1):
        failures += _night(prod, inc, full, night)
    # Every incremental night holds every foreign key (cycles included), never falls back to a
    # full sync, and ends where the full sync ends; the nights above printed what happened.
    assert failures == []
    # And verify proves it, row by row, on the real types (no rules: its personal-data checks are
    # skipped), with nothing to find even in --strict but the NOT VALID constraints prod has too
    # (the applications' own migrations leave some; staging mirrors prod's schema).
    report = verify_databases(prod, inc, rules=None, masking_key=None, strict=True)
    prods_not_valid = {name for (name,) in query(prod, "SELECT conname FROM pg_constraint WHERE NOT convalidated")}
    assert [f for f in report["findings"] if not (f["kind"] == "not_valid" and f["detail"].split()[1] in
                                                  prods_not_valid)] == [], report["findings"]


def _night(prod: str, inc: str, full: str, night: int) -> list[str]:
    changes = realschema.change_night(prod, fraction=NIGHT_FRACTION, seed=night)
    print(f"night {night}: {changes.updated} updated, {changes.inserted} inserted, {changes.deleted} deleted"
          f" in {changes.tables} tables; refused {changes.refused}")
    _, full_seconds = _timed(sync_databases, prod, full)
    expected = realschema.content(prod)
    assert realschema.differences(expected, realschema.content(full)) == []
    try:
        report, seconds = _timed(sync_databases, prod, inc, incremental=True)
    except Exception as error:  # noqa: BLE001 - the night's failure is reported with the others
        print(f"  incremental FAILED: {str(error)[:600]}")
        return [f"night {night}: {error}"]
    modes = Counter(t["mode"] for t in report["tables"])
    print(f"  full {full_seconds:.1f}s, incremental {seconds:.1f}s, modes {dict(modes)},"
          f" fallback {report.get('fallback')}")
    problems = [f"night {night}: fell back: {report['fallback']}"] if report.get("fallback") else []
    # A table copied in full on a delta night: only by the share-changed threshold, or for want of a key.
    problems += [f"night {night}: {t['table']} copied in full: {t.get('reason')}" for t in report["tables"]
                 if t["mode"] == "full" and not any(w in (t.get("reason") or "") for w in FULL_REASONS)]
    problems += [f"night {night}: rows {d}" for d in realschema.differences(expected, realschema.content(inc))]
    problems += [f"night {night}: sequence {d}" for d in realschema.differences(
        realschema.sequence_positions(full), realschema.sequence_positions(inc))]
    return problems


FULL_REASONS = ("a full copy is cheaper", "no primary key")


def feeding(dsn: str) -> list[tuple]:
    """Every column's default, identity and owned sequence: what decides how an INSERT gets its id."""
    return query(dsn, """
        SELECT * FROM (
          SELECT c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid) AS expr, a.attidentity,
                 (SELECT s.relname FROM pg_depend p JOIN pg_class s ON s.oid = p.objid WHERE p.refobjid = c.oid
                  AND p.refobjsubid = a.attnum AND s.relkind = 'S' AND p.deptype IN ('a', 'i')) AS owned
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND a.attnum > 0
            AND NOT a.attisdropped) x
        WHERE expr IS NOT NULL OR attidentity <> '' OR owned IS NOT NULL
        ORDER BY 1, 2""")


def test_schema_dir_default_is_beside_the_project(monkeypatch):
    monkeypatch.delenv(realschema.SCHEMA_DIR_VAR, raising=False)
    assert realschema.schema_dir().parts[-2:] == ("shared", "schemas")

