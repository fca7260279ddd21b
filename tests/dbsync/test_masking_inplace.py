"""`db-sync mask` where views are, its record, the date strategies, and check-rules' flagged_by,
on a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import psycopg2
import pytest

from dbsync.cli import main
from dbsync.masking import strategies
from dbsync.masking.rules import ColumnRule, parse_rules
from tests.support.db import execute, query

KEY_TEXT = "in-place test key, long enough: 32 chars or more"
RAW = ("ada@corp.test", "Ada Lovelace", "bob@corp.test", "Bob Marley")

SCHEMA = (
    "CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE NOT NULL, full_name text NOT NULL, born date,"
    " seen timestamptz)",
    "CREATE TABLE orders (id int PRIMARY KEY, person_id int REFERENCES people, total int)",
    "INSERT INTO people VALUES (1, 'ada@corp.test', 'Ada Lovelace', '1815-12-10', '2024-03-01 23:30+00'),"
    " (2, 'bob@corp.test', 'Bob Marley', '1945-02-06', NULL)",
    "INSERT INTO orders VALUES (1, 1, 10), (2, 2, 20), (3, 1, 30), (4, 2, 40)",
    "CREATE VIEW people_public WITH (security_barrier = true) AS SELECT id, email, full_name FROM people",
    "COMMENT ON VIEW people_public IS 'who is who'",
    "GRANT SELECT ON people_public TO PUBLIC",
    "CREATE VIEW people_domains AS SELECT id, split_part(email, '@', 2) AS domain FROM people_public",
    "CREATE MATERIALIZED VIEW people_mv AS SELECT id, email, full_name, born FROM people",
    "CREATE UNIQUE INDEX people_mv_id ON people_mv (id)",
    "CREATE MATERIALIZED VIEW order_totals AS SELECT count(*) AS n, sum(total) AS total FROM orders",
)
RULES = """\
tables:
  public.people:
    columns:
      email: email
      full_name: name
      born: year
      seen: {date_shift: 10}
  public.orders:
    where: "id > 2"
"""


@pytest.fixture
def viewed(make_db, tmp_path, monkeypatch):
    dsn = make_db("viewed")
    execute(dsn, *SCHEMA)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    monkeypatch.setenv("SYNC_MASKING_KEY", KEY_TEXT)
    return dsn, str(rules)


def _everything(dsn: str) -> str:
    """Every row of every table, view and materialized view of the public schema, as text."""
    rels = query(dsn, "SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                      " AND relkind IN ('r', 'v', 'm')")
    return "\n".join(str(query(dsn, f"SELECT t::text FROM {name} t")) for (name,) in rels)  # noqa: S608 - catalog names


def test_mask_recreates_views_and_refreshes_materialized_views(viewed, capsys):
    dsn, rules = viewed
    assert main(["mask", "--dsn", dsn, "--rules", rules, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    actions = {t["table"]: t["action"] for t in result["tables"]}
    assert actions["public.people_public"] == actions["public.people_mv"] == "recreated"
    assert actions["public.people_domains"] == "recreated" and actions["public.order_totals"] == "refreshed"
    everything = _everything(dsn)
    assert not [raw for raw in RAW if raw in everything]
    assert "1815-12-10" not in everything and "1815-01-01" in everything
    emails = query(dsn, "SELECT email FROM people ORDER BY id")
    assert emails == query(dsn, "SELECT email FROM people_public ORDER BY id")
    assert emails == query(dsn, "SELECT email FROM people_mv ORDER BY id")
    assert query(dsn, "SELECT DISTINCT domain FROM people_domains") == [("example.com",)]
    assert query(dsn, "SELECT n, total FROM order_totals") == [(2, 70)]
    assert query(dsn, "SELECT reloptions, obj_description(oid, 'pg_class'), has_table_privilege('public',"
                      " oid, 'SELECT') FROM pg_class WHERE relname = 'people_public'") == [
        (["security_barrier=true"], "who is who", True)]
    assert query(dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'people_mv'") == [("people_mv_id",)]


def test_a_second_mask_is_refused_whatever_the_key(viewed, capsys, monkeypatch):
    dsn, rules = viewed
    assert main(["mask", "--dsn", dsn, "--rules", rules]) == 0
    before = query(dsn, "SELECT email FROM people ORDER BY id")
    capsys.readouterr()
    monkeypatch.setenv("SYNC_MASKING_KEY", "another in-place key, also 32 characters+")
    assert main(["mask", "--dsn", dsn, "--rules", rules]) == 2
    err = capsys.readouterr().err
    assert "masked already" in err and len(err.strip().splitlines()) == 1
    assert main(["mask", "--dsn", dsn, "--rules", rules, "--dry-run"]) == 2
    assert query(dsn, "SELECT email FROM people ORDER BY id") == before
    assert query(dsn, "SELECT count(*) FROM dbsync.masked") == [(1,)]


def test_the_dry_run_refuses_what_the_real_run_would(viewed, capsys):
    dsn, rules = viewed
    execute(dsn, "CREATE RULE people_public_insert AS ON INSERT TO people_public DO INSTEAD"
                 " INSERT INTO people (id, email, full_name) VALUES (NEW.id, NEW.email, NEW.full_name)")
    for extra in (["--dry-run"], []):
        assert main(["mask", "--dsn", dsn, "--rules", rules, *extra]) == 2
        err = capsys.readouterr().err
        assert "people_public_insert" in err and "nothing was changed" in err
    assert query(dsn, "SELECT email FROM people WHERE id = 1") == [("ada@corp.test",)]
    assert query(dsn, "SELECT to_regclass('dbsync.masked')") == [(None,)]


def _masked(dsn: str, rule: ColumnRule, column_type: str, values: list, zone: str = "UTC") -> list:
    expr = strategies.expression(rule, "v", column_type)
    conn = psycopg2.connect(dsn, options=f"-c dbsync.mask_key={KEY_TEXT.encode().hex()} -c TimeZone={zone}")
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TEMP TABLE d (v {column_type})")  # noqa: S608 - a type name of the test's
            cur.executemany("INSERT INTO d VALUES (%s)", [(v,) for v in values])
            cur.execute(f"SELECT {expr.as_string(conn)} FROM d")  # noqa: S608 - composed with psycopg2.sql
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def test_year_truncates_to_january_first_in_the_columns_type(make_db):
    dsn = make_db("dates")
    rule = ColumnRule("year")
    assert _masked(dsn, rule, "date", [date(1815, 12, 10), None]) == [date(1815, 1, 1), None]
    assert _masked(dsn, rule, "timestamp without time zone", [datetime(2001, 7, 4, 12)]) == [datetime(2001, 1, 1)]
    got = _masked(dsn, rule, "timestamp with time zone", [datetime(2001, 7, 4, 12, tzinfo=UTC)], "Asia/Tokyo")
    assert got == [datetime(2001, 1, 1, tzinfo=UTC)]


def test_date_shift_is_keyed_deterministic_and_within_its_range(make_db):
    dsn = make_db("dates")
    rule = ColumnRule("date_shift", value=10)
    days = [date(2020, 1, 1) + timedelta(days=i) for i in range(200)]
    shifted = _masked(dsn, rule, "date", days)
    assert all(abs((s - d).days) <= 10 for s, d in zip(shifted, days, strict=True))
    assert len({(s - d).days for s, d in zip(shifted, days, strict=True)}) > 10  # keyed per day, not one offset
    assert _masked(dsn, rule, "date", days) == shifted
    stamps = [datetime(2024, 3, 1, 23, 30, tzinfo=UTC)]
    utc = _masked(dsn, rule, "timestamp with time zone", stamps)
    assert _masked(dsn, rule, "timestamp with time zone", stamps, "America/New_York") == utc
    assert abs(utc[0] - stamps[0]) <= timedelta(days=10) and (utc[0] - stamps[0]) % timedelta(days=1) == timedelta(0)


@pytest.mark.parametrize(("raw", "expected"), [
    ({"date_shift": 0}, "date_shift takes a whole number of days"),
    ("date_shift", "date_shift needs its range"),
    ({"date_shift": "ten"}, "date_shift takes a whole number of days"),
])
def test_bad_date_shift_rules_are_refused(raw, expected):
    with pytest.raises(Exception, match=expected):
        parse_rules({"tables": {"public.people": {"columns": {"born": raw}}}})


def test_check_rules_says_what_flagged_each_column_and_not_personal_clears_it(prod_and_staging, tmp_path, capsys):
    prod, _ = prod_and_staging
    partial = tmp_path / "partial.yaml"
    partial.write_text("tables:\n  public.users:\n    columns:\n      email: email\n")
    assert main(["check-rules", "--dsn", prod, "--rules", str(partial), "--json"]) == 1
    by = {(c["table"], c["column"]): c for c in json.loads(capsys.readouterr().out)["columns"]}
    assert by[("public.users", "display_name")]["rule"] == "uncovered"
    assert by[("public.users", "display_name")]["flagged_by"].startswith("people's names: display_name")
    assert "flagged_by" not in by[("public.books", "title")]
    assert main(["check-rules", "--dsn", prod, "--rules", str(partial)]) == 1
    assert "people's names: display_name" in capsys.readouterr().out
    cleared = tmp_path / "cleared.yaml"
    cleared.write_text(partial.read_text() + "not_personal:\n  - public.users.display_name\n  - public\\.authors\\..*\n"
                       "  - public.reviews.body\n  - public.schema_migrations.name\n")
    main(["check-rules", "--dsn", prod, "--rules", str(cleared), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert [c for c in report["columns"] if c["rule"] == "uncovered"] == []
