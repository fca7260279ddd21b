"""The drift policy on a real PostgreSQL (docs/sync.md, "Schema drift"): staging ahead of prod by a
migration, prod with a table and a column of its own; the full and the incremental sync end in
the same state, staging's own values kept, no dangling row; what either would refuse after the
copy is refused before it, by the dry run and check-rules too."""

from __future__ import annotations

import pytest

from dbsync.errors import DbSyncError
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import parse_rules
from dbsync.masking.service import rules_report
from dbsync.sync import sync_databases
from tests.support.db import execute, query, snapshot
from tests.support.drift import SHARED, STAGING_OWN, ahead

pytestmark = pytest.mark.usefixtures("no_allowlist")  # tests/dbsync/conftest.py

MODES = pytest.mark.parametrize("incremental", [False, True], ids=["full", "incremental"])
KEY = MaskingKey(b"test key, not a secret, 32 chars or more")

def content(dsn: str) -> dict:
    """Every user table's rows, in key order (the tool's own schema left out)."""
    tables = [t for (t,) in query(dsn, "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                       " WHERE n.nspname = 'public' AND relkind = 'r' ORDER BY 1")]
    return {t: query(dsn, f"SELECT * FROM {t} ORDER BY 1") for t in tables}  # noqa: S608 - names from pg_class


def dangling(dsn: str) -> list:
    """Rows referencing nothing, and foreign keys not valid: both must be empty."""
    return query(dsn, "SELECT w.id FROM wishlists w WHERE (w.customer_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM"
                      " customers c WHERE c.id = w.customer_id)) OR (w.order_id IS NOT NULL AND NOT EXISTS"
                      " (SELECT 1 FROM orders o WHERE o.id = w.order_id))") + query(
        dsn, "SELECT conname FROM pg_constraint WHERE contype = 'f' AND NOT convalidated")


@MODES
def test_staging_ahead_syncs_keeping_its_own_and_refuses_the_no_action_orphan_first(make_db, incremental):
    prod, staging = ahead(make_db)
    before = snapshot(staging)
    with pytest.raises(DbSyncError) as err:
        sync_databases(prod, staging, incremental=incremental)
    msg = str(err.value)
    assert "public.wishlists (wishlists_order_id_fkey NO ACTION → public.orders): 1 row(s)" in msg
    assert "--delete-orphans" in msg and "nothing was written" in msg and "SET NULL" not in msg
    with pytest.raises(DbSyncError, match="wishlists_order_id_fkey"):
        sync_databases(prod, staging, incremental=incremental, dry_run=True)
    assert snapshot(staging) == before

    result = sync_databases(prod, staging, incremental=incremental, delete_orphans=True)
    drift = result["schema_drift"]
    assert drift["prod_only_tables"] == ["public.audit_log"]
    assert drift["prod_only_columns"] == ["public.customers.hotfix"]
    assert drift["staging_only_tables"] == ["public.wishlists"]
    assert drift["staging_only_columns"] == ["public.customers.nickname", "public.customers.tier"]
    assert drift["orphans"] == {"public.wishlists": {"nulled": 1, "deleted": 1}}
    assert any("public.audit_log, public.customers.hotfix" in w for w in result["warnings"])
    rows = content(staging)
    assert rows["orders"] == query(prod, "SELECT * FROM orders ORDER BY 1")
    assert [r[:3] for r in rows["customers"]] == query(prod, "SELECT id, name, phone FROM customers ORDER BY 1")
    own = {r[0]: r[3:] for r in rows["customers"]}
    assert own[1] == ("nick 1", "basic") and own[2] == ("nick 2", "gold") and own[3] == (None, "basic")
    assert own[41] == (None, "basic") and 42 not in own  # a new row gets the defaults
    assert rows["wishlists"] == [(1, None, 1, "its customer goes: SET NULL"), (3, 2, 2, "all there"),
                                 (4, None, None, "references nothing")]
    assert dangling(staging) == []
    assert query(staging, "SELECT indexname FROM pg_indexes WHERE tablename = 'customers' ORDER BY 1") == [
        ("customers_pkey",), ("customers_tier",)]


def test_a_full_and_an_incremental_sync_from_the_same_state_end_identical(make_db):
    prod, full = ahead(make_db)
    _, incremental = ahead(make_db)
    first = sync_databases(prod, full, delete_orphans=True)
    second = sync_databases(prod, incremental, delete_orphans=True, incremental=True)
    assert {t["mode"] for t in second["tables"]} == {"delta"}  # really the incremental path
    assert content(full) == content(incremental)
    assert first["schema_drift"] == second["schema_drift"]


@MODES
def test_refuse_policy_refuses_the_same_state_and_writes_nothing(make_db, incremental):
    prod, staging = ahead(make_db)
    before = snapshot(staging)
    with pytest.raises(DbSyncError) as err:
        sync_databases(prod, staging, incremental=incremental, schema_drift="refuse", delete_orphans=True)
    msg = str(err.value)
    assert "table public.audit_log is missing on the target" in msg
    assert "column public.customers.hotfix is missing on the target" in msg and "nothing was written" in msg
    assert snapshot(staging) == before


@MODES
def test_staging_synced_onward_into_a_copy_of_it(make_db, incremental):
    prod, staging = ahead(make_db, orphan=False)
    sync_databases(prod, staging, incremental=True)  # staging now holds the tool's record (dbsync.sync_state)
    assert query(staging, "SELECT count(*) FROM dbsync.sync_state") == [(2,)]
    copy = make_db("dev")
    execute(copy, *SHARED, *STAGING_OWN)
    result = sync_databases(staging, copy, incremental=incremental)
    assert result["schema_drift"]["prod_only_tables"] == [] and "warnings" not in result
    assert content(copy) == content(staging)


def test_a_column_staging_gains_from_prod_is_compared_in_full_that_night(make_db):
    prod, staging = ahead(make_db, orphan=False)
    execute(prod, "UPDATE customers SET hotfix = NULL WHERE id > 3")
    sync_databases(prod, staging, incremental=True)
    quiet = sync_databases(prod, staging, incremental=True)
    assert {t["table"]: t["found"] for t in quiet["tables"]} == {
        "public.customers": "since the last sync", "public.orders": "since the last sync"}
    execute(staging, "ALTER TABLE customers ADD COLUMN hotfix text")  # prod's hotfix reaches staging
    result = sync_databases(prod, staging, incremental=True)
    # Prod's rows did not change since the last sync: only the new fingerprint (the copied columns)
    # makes this night compare the table in full and find the values staging lacks.
    found = {t["table"]: (t["found"], t["mode"], t["rows_copied"]) for t in result["tables"]}
    assert found == {"public.customers": ("by digest", "delta", 3), "public.orders": ("since the last sync",
                                                                                    "unchanged", 0)}
    assert result["schema_drift"]["prod_only_columns"] == []
    assert query(staging, "SELECT id FROM customers WHERE hotfix = 'h' ORDER BY 1") == [(1,), (2,), (3,)]


@MODES
def test_excluded_tables_are_left_alone_and_a_key_into_one_is_refused_first(make_db, incremental):
    prod, staging = ahead(make_db, orphan=False)
    result = sync_databases(prod, staging, incremental=incremental, exclude=["public.audit_*"])
    # Prod's own table, excluded: said on purpose, so neither warned about nor counted as drift.
    assert result["schema_drift"]["excluded"] == ["public.audit_log"]
    assert result["schema_drift"]["prod_only_tables"] == [] and "public.audit_log" not in str(result["warnings"])
    rules = parse_rules({"tables": {}, "exclude": ["public.cust*"]})
    before = snapshot(staging)
    for dry_run in (True, False):
        with pytest.raises(DbSyncError) as err:
            sync_databases(prod, staging, incremental=incremental, rules=rules, dry_run=dry_run)
        assert "foreign key orders_customer_id_fkey of public.orders references public.customers, which the sync" \
               " does not write" in str(err.value)
    assert snapshot(staging) == before
    # An excluded table referencing a synced one is staging's own: its keys act as declared.
    execute(prod, "INSERT INTO orders VALUES (99, 1, 5)")
    result = sync_databases(prod, staging, incremental=incremental, exclude=["public.orders"])
    assert result["schema_drift"]["excluded"] == ["public.orders"]
    assert query(staging, "SELECT count(*) FROM orders WHERE id = 99") == [(0,)]
    assert query(staging, "SELECT count(*) FROM customers WHERE id = 41") == [(1,)]


@MODES
def test_a_staging_only_not_null_column_without_default_and_an_empty_staging_are_refused(make_db, incremental):
    prod, staging = ahead(make_db, orphan=False)
    execute(staging, "ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'web'",
            "ALTER TABLE orders ALTER COLUMN channel DROP DEFAULT")
    before = snapshot(staging)
    for dry_run in (True, False):
        with pytest.raises(DbSyncError) as err:
            sync_databases(prod, staging, incremental=incremental, dry_run=dry_run)
        assert "column public.orders.channel exists only on staging and is NOT NULL without a default" in str(err.value)
        assert "SET DEFAULT" in str(err.value)
    assert snapshot(staging) == before
    with pytest.raises(DbSyncError, match="pg_dump --schema-only"):
        sync_databases(prod, make_db("empty"), incremental=incremental)


# -- refused before the copy: by check-rules (prod only) and the dry run, with no row copied --------

def _refused_first(prod: str, staging: str, rules, incremental: bool, expected: str, *, check_rules: bool = True):
    before = snapshot(staging)
    if check_rules:
        import psycopg2

        conn = psycopg2.connect(prod)
        try:
            with pytest.raises(DbSyncError) as err:
                rules_report(conn, rules)
            assert expected in str(err.value)
        finally:
            conn.close()
    for dry_run in (True, False):
        with pytest.raises(DbSyncError) as err:
            sync_databases(prod, staging, rules=rules, masking_key=KEY, incremental=incremental, dry_run=dry_run)
        assert expected in str(err.value)
    assert snapshot(staging) == before


def _rules(tables: dict):
    # Every personal-data column the gate flags is covered, so that only the case in hand refuses.
    base = {"public.customers": {"columns": {"name": "name", "phone": "phone"}}}
    return parse_rules({"tables": {**base, **tables}, "not_personal": [r"public\.customers\.hotfix"]})


@MODES
def test_a_value_that_does_not_cast_is_refused_first(make_db, incremental):
    prod, staging = ahead(make_db, orphan=False)
    rules = _rules({"public.orders": {"columns": {"total": {"value": "abc"}}}})
    _refused_first(prod, staging, rules, incremental, "public.orders.total")


@MODES
@pytest.mark.parametrize("parent", [{"where": "id <= 20"}, {"rows": "none"}], ids=["where", "rows-none"])
def test_a_where_leaving_rows_pointing_at_filtered_rows_is_refused_first(make_db, incremental, parent):
    prod, staging = ahead(make_db, orphan=False)
    rules = _rules({"public.customers": {"columns": {"name": "name", "phone": "phone"}, **parent}})
    # Order 60 has no customer: a NULL key references nothing, so it is never counted.
    count = 59 if "rows" in parent else len([i for i in range(1, 60) if 1 + i % 40 > 20])
    how = "rows: none" if "rows" in parent else "where 'id <= 20'"
    _refused_first(prod, staging, rules, incremental,
                   f"public.orders (orders_customer_id_fkey → public.customers {how}): {count} row(s)")


@MODES
def test_a_strategy_making_duplicates_under_a_unique_index_of_staging_is_refused_first(make_db, incremental):
    prod, staging = ahead(make_db, orphan=False)
    execute(staging, "CREATE UNIQUE INDEX customers_phone_uq ON customers (phone)")
    rules = _rules({})
    # Prod has no such index: check-rules, which reads prod only, cannot know; the dry run does.
    _refused_first(prod, staging, rules, incremental,
                   "public.customers.phone: phone would make duplicates in staging's unique index customers_phone_uq",
                   check_rules=False)
    execute(prod, "CREATE UNIQUE INDEX customers_phone_uq ON customers (phone)")
    _refused_first(prod, staging, rules, incremental, "unique index customers_phone_uq")


@MODES
def test_a_mutable_fragment_is_refused_first(make_db, incremental):
    prod, staging = ahead(make_db, orphan=False)
    rules = _rules({"public.orders": {"columns": {"total": {"sql": "random()"}}}})
    _refused_first(prod, staging, rules, incremental, "is not IMMUTABLE", check_rules=False)


# -- the edges: options and variables reach the engine as plain values ------------------------------

def test_the_cli_takes_the_policy_from_options_and_variables(make_db, monkeypatch, capsys, no_sync_env):
    import json

    from dbsync.cli import main

    prod, staging = ahead(make_db)
    before = snapshot(staging)
    monkeypatch.setenv("SYNC_SCHEMA_DRIFT", "refuse")
    assert main(["sync", "--source", prod, "--target", staging, "--delete-orphans"]) == 2
    assert "table public.audit_log is missing on the target" in capsys.readouterr().err
    assert main(["sync", "--source", prod, "--target", staging, "--schema-drift", "tolerate"]) == 2
    assert "wishlists_order_id_fkey NO ACTION" in capsys.readouterr().err
    assert snapshot(staging) == before
    monkeypatch.setenv("SYNC_EXCLUDE_TABLES", "public.audit_*, other.*")
    monkeypatch.setenv("SYNC_DELETE_ORPHANS", "true")
    assert main(["sync", "--source", prod, "--target", staging, "--schema-drift", "tolerate", "--json",
                 "--exclude-table", "public.nothing"]) == 0
    out = capsys.readouterr()
    drift = json.loads(out.out)["schema_drift"]
    assert drift["excluded"] == ["public.audit_log"] and drift["orphans"]["public.wishlists"]["deleted"] == 1
    assert "db-sync: warning: prod has 1 table(s) or column(s) staging lacks, not copied: public.customers.hotfix" \
        in out.err
