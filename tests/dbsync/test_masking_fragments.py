"""Every sql: and where: fragment of the rules must be IMMUTABLE as the server judges a generated
column's expression: the fragments that read the masking key however it is spelt, and those
whose value changes from night to night or with the session's settings, are refused by the sync
(its dry run too), by `check-rules --target` and by `mask`, before any row is read."""

from __future__ import annotations

import json

import pytest

from dbsync.cli import main
from dbsync.errors import DbSyncError
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import parse_rules
from dbsync.masking.service import mask_database
from dbsync.sync import phases, sync_databases
from tests.support.db import execute, query, snapshot

pytestmark = pytest.mark.usefixtures("no_sync_env")  # tests/dbsync/conftest.py

KEY = MaskingKey(b"fragments test key, 32 characters or more")
SCHEMA = ("CREATE TABLE notes (id int PRIMARY KEY, body text, created_at timestamptz NOT NULL, d date,"
          " c1 text, c2 text, c3 text, c4 text, c5 text, c6 text, c7 text, c8 text)",
          "CREATE TABLE recent (id int PRIMARY KEY, created_at timestamptz NOT NULL)",
          "CREATE TABLE dated (id int PRIMARY KEY, d date NOT NULL)",
          "CREATE FUNCTION initials(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT left(t, 1) $$",
          # plpgsql is never inlined: the server judges the function by its declaration alone
          "CREATE FUNCTION shuffled(t text) RETURNS text LANGUAGE plpgsql VOLATILE"
          " AS $$ BEGIN RETURN reverse(t); END $$")
PROD_ROWS = ("INSERT INTO notes SELECT g, 'Body ' || g, '2025-01-01'::timestamptz + g * interval '1 day',"
             " DATE '2025-01-01' + g FROM generate_series(1, 50) g",
             "INSERT INTO recent SELECT g, now() - g * interval '1 day' FROM generate_series(1, 200) g",
             "INSERT INTO dated SELECT g, CURRENT_DATE - 100 + g FROM generate_series(1, 200) g")
STAGING_ROWS = ("INSERT INTO notes VALUES (1000, 'staging before', now())",)

# (column of notes, fragment): three ways to read the masking key, then values that change with
# the night or the session's settings.
BAD_SQL = (
    ("c1", "current_setting('dbsync.' || 'mask_key')"),
    ("c2", "(SELECT setting FROM pg_settings WHERE name ~ 'mask_k')"),
    ("c3", "current_setting(U&'dbsync.mask\\005fkey')"),
    ("c4", "md5(random()::text)"),
    ("c5", "now()::text"),
    ("c6", "current_setting('TimeZone')"),
    ("c7", "created_at::text"),  # timestamptz -> text depends on DateStyle and TimeZone
    ("c8", "CURRENT_DATE::text"),
    ("body", "shuffled(body)"),  # a user's function declared VOLATILE
)
# (table, where:)
BAD_WHERE = (("public.recent", "created_at > now() - interval '90 days'"), ("public.dated", "d >= CURRENT_DATE"))
GOOD_SQL = (("c1", "lower(body)"), ("c2", "md5(body)"), ("c3", "'x' || id::text"), ("c4", "substr(body, 1, 1)"),
            ("c5", "initials(body)"), ("c6", "upper(body) || ' ' || (d - DATE '2025-01-01')"))


def rules_of(sql_rules, wheres=()) -> dict:
    tables = {"public.notes": {"columns": {c: {"sql": text} for c, text in sql_rules}}}
    for table, where in wheres:
        tables[table] = {"where": where}
    return {"tables": tables}


def write_rules(tmp_path, data: dict) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return str(path)


@pytest.fixture
def pair(make_db):
    prod, staging = make_db("fprod"), make_db("fstaging")
    execute(prod, *SCHEMA, *PROD_ROWS)
    execute(staging, *SCHEMA, *STAGING_ROWS)
    return prod, staging


@pytest.fixture
def copies(monkeypatch):
    """Every COPY the sync starts (none may start once a fragment is refused)."""
    started = []
    real = phases.stream_copy
    monkeypatch.setattr(phases, "stream_copy", lambda *a, **kw: started.append(a) or real(*a, **kw))
    return started


def assert_lists_every_bad_fragment(message: str) -> None:
    assert "\n" not in message and "must be IMMUTABLE" in message
    for column, text in BAD_SQL:
        assert f"public.notes.{column} sql {text!r}" in message, (column, message)
    for table, where in BAD_WHERE:
        assert f"{table} where {where!r}" in message, (table, message)


@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry run"])
def test_the_sync_refuses_every_mutable_fragment_before_any_row_moves(pair, copies, dry_run):
    prod, staging = pair
    before = snapshot(staging)
    with pytest.raises(DbSyncError) as caught:
        sync_databases(prod, staging, rules=parse_rules(rules_of(BAD_SQL, BAD_WHERE)), masking_key=KEY,
                       dry_run=dry_run)
    assert_lists_every_bad_fragment(str(caught.value))
    assert KEY.value.hex() not in str(caught.value)
    assert copies == [] and snapshot(staging) == before


def test_immutable_fragments_pass_and_arrive_as_computed(pair, copies):
    prod, staging = pair
    sync_databases(prod, staging, rules=parse_rules(rules_of(GOOD_SQL, [("public.dated", "d > DATE '2025-01-01'")])))
    assert query(staging, "SELECT c1, c2, c3, c4, c5, c6 FROM notes WHERE id = 7") == [
        ("body 7", query(prod, "SELECT md5('Body 7')")[0][0], "x7", "B", "B", "BODY 7 7")]
    assert query(staging, "SELECT count(*) FROM notes") == [(50,)] and copies


def test_check_rules_proves_the_fragments_on_a_target(pair, tmp_path, capsys):
    prod, staging = pair
    bad = write_rules(tmp_path, rules_of(BAD_SQL, BAD_WHERE))
    assert main(["check-rules", "--dsn", prod, "--rules", bad, "--target", staging]) == 2
    err = capsys.readouterr().err
    assert_lists_every_bad_fragment(err.strip().removeprefix("db-sync: error: "))
    good = write_rules(tmp_path, rules_of(GOOD_SQL))
    assert main(["check-rules", "--dsn", prod, "--rules", good, "--target", staging, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and {(f["column"], f["check"]) for f in report["fragments"]} == {
        (c, "immutable") for c, _ in GOOD_SQL}


def test_check_rules_without_a_target_reports_the_fragments_unchecked(pair, tmp_path, capsys, monkeypatch):
    prod, staging = pair
    good = write_rules(tmp_path, rules_of(GOOD_SQL, [("public.dated", "d > DATE '2025-01-01'")]))
    assert main(["check-rules", "--dsn", prod, "--rules", good]) == 1
    out = capsys.readouterr().out
    assert "initials(body)" in out and "unchecked" in out and "--target" in out
    assert main(["check-rules", "--dsn", prod, "--rules", good, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["ok"] and len(report["fragments"]) == len(GOOD_SQL) + 1
    assert {f["check"] for f in report["fragments"]} == {"unchecked"}
    assert {"table": "public.dated", "column": None, "fragment": "d > DATE '2025-01-01'",
            "check": "unchecked"} in report["fragments"]
    monkeypatch.setenv("TARGET_DATABASE_URL", staging)  # the default target
    assert main(["check-rules", "--dsn", prod, "--rules", good]) == 0


def test_mask_in_place_refuses_a_mutable_fragment(pair):
    prod, _ = pair
    before = snapshot(prod)
    with pytest.raises(DbSyncError) as caught:
        mask_database(prod, parse_rules(rules_of(BAD_SQL, BAD_WHERE)), KEY)
    assert_lists_every_bad_fragment(str(caught.value))
    assert snapshot(prod) == before
