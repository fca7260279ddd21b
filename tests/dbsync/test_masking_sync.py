"""Masking inside the sync's COPY, on a real PostgreSQL: no prod value of a masked column reaches
staging, and what arrives is deterministic, keyed, unique where the input was, and still joins."""

from __future__ import annotations

import psycopg2
import pytest

from dbsync.errors import DbSyncError
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import ColumnRule, load_rules, parse_rules
from dbsync.sync import sync_databases
from tests.support.db import query

RULES = "backend/sync-rules.yaml"
KEY = MaskingKey(b"test key, not a secret, 32 chars or more")




def test_masked_columns_never_carry_a_prod_value(prod_and_staging):
    prod, staging = prod_and_staging
    result = sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY)
    assert result["masking"]["masked_columns"] == ["public.reviews.body", "public.users.display_name",
                                                   "public.users.email"]
    prod_users = dict(query(prod, "SELECT id, (email, display_name) FROM users"))
    staged = query(staging, "SELECT id, email, display_name FROM users")
    assert len(staged) == len(prod_users) > 0
    prod_values = {v for pair in query(prod, "SELECT email, display_name FROM users") for v in pair}
    assert not prod_values & {v for _, e, n in staged for v in (e, n)}
    assert all(e.endswith("@example.com") for _, e, _ in staged)
    assert len({e for _, e, _ in staged}) == len(staged)  # unique stays unique
    bodies = query(prod, "SELECT id, body FROM reviews ORDER BY id")
    redacted = query(staging, "SELECT id, body FROM reviews ORDER BY id")
    assert [(i, None if b is None else "x" * len(b)) for i, b in bodies] == redacted
    # kept columns and unmasked tables arrive as they are
    assert query(prod, "SELECT * FROM authors ORDER BY id") == query(staging, "SELECT * FROM authors ORDER BY id")


def test_same_key_same_values_other_key_other_values(prod_and_staging, make_db):
    prod, staging = prod_and_staging
    rules = load_rules(RULES)
    sync_databases(prod, staging, rules=rules, masking_key=KEY)
    first = query(staging, "SELECT id, email, display_name FROM users ORDER BY id")
    sync_databases(prod, staging, rules=rules, masking_key=KEY)
    assert query(staging, "SELECT id, email, display_name FROM users ORDER BY id") == first
    sync_databases(prod, staging, rules=rules, masking_key=MaskingKey(b"another key, also 32 characters or more"))
    other = query(staging, "SELECT id, email, display_name FROM users ORDER BY id")
    assert all(a[1] != b[1] for a, b in zip(first, other, strict=True))


def test_a_masked_value_used_to_join_still_joins(make_db):
    prod, staging = make_db("mprod"), make_db("mstaging")
    ddl = ("CREATE TABLE accounts (id int PRIMARY KEY, email text UNIQUE NOT NULL);"
           " CREATE TABLE invites (id int PRIMARY KEY, email text REFERENCES accounts (email))")
    for dsn in (prod, staging):
        rows_ = psycopg2.connect(dsn)
        with rows_.cursor() as cur:
            cur.execute(ddl)
        rows_.commit()
        rows_.close()
    conn = psycopg2.connect(prod)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO accounts VALUES (1, 'a@corp.test'), (2, 'b@corp.test');"
                    " INSERT INTO invites VALUES (10, 'a@corp.test'), (11, 'b@corp.test'), (12, NULL)")
    conn.commit()
    conn.close()
    rules = parse_rules({"tables": {"public.accounts": {"columns": {"email": "email"}},
                                    "public.invites": {"columns": {"email": "email"}}}})
    sync_databases(prod, staging, rules=rules, masking_key=KEY)
    joined = query(staging, "SELECT i.id, a.id FROM invites i JOIN accounts a USING (email) ORDER BY 1")
    assert joined == [(10, 1), (11, 2)]
    assert query(staging, "SELECT email FROM invites WHERE id = 12") == [(None,)]


def test_binary_copy_is_kept_for_masked_tables(prod_and_staging):
    prod, staging = prod_and_staging
    result = sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY)
    formats = {t["table"]: t["format"] for t in result["tables"]}
    assert formats["public.users"] == formats["public.reviews"] == "binary"


def test_rows_none_and_where(prod_and_staging):
    prod, staging = prod_and_staging
    rules = load_rules(RULES)
    rules.tables["public.reviews"].where = "rating >= 4"
    sync_databases(prod, staging, rules=rules, masking_key=KEY)
    assert query(staging, "SELECT count(*) FROM reviews") == query(
        prod, "SELECT count(*) FROM reviews WHERE rating >= 4")
    rules.tables["public.reviews"].copy_rows, rules.tables["public.reviews"].where = False, None
    result = sync_databases(prod, staging, rules=rules, masking_key=KEY)
    assert query(staging, "SELECT count(*) FROM reviews") == [(0,)]
    assert result["masking"]["empty_tables"] == ["public.reviews"]


def test_the_gate_refuses_and_names_every_uncovered_column(prod_and_staging):
    prod, staging = prod_and_staging
    before = query(staging, "SELECT count(*) FROM users")
    rules = parse_rules({"tables": {"public.reviews": {"columns": {"body": "redact"}}}})
    with pytest.raises(DbSyncError) as caught:
        sync_databases(prod, staging, rules=rules, masking_key=KEY)
    message = str(caught.value)
    for column in ("public.users.email", "public.users.display_name", "public.authors.name", "public.authors.born"):
        assert column in message
    assert "nothing was written" in message and query(staging, "SELECT count(*) FROM users") == before


def test_without_rules_the_sync_runs_and_names_what_the_gate_would_flag(prod_and_staging):
    prod, staging = prod_and_staging
    result = sync_databases(prod, staging)
    assert result["masking"]["rules"] is None
    assert "public.users.email (contact details)" in result["masking"]["uncovered"]


def test_keyed_strategies_without_a_key_are_refused(prod_and_staging):
    prod, staging = prod_and_staging
    with pytest.raises(DbSyncError, match="no masking key"):
        sync_databases(prod, staging, rules=load_rules(RULES))


def test_a_failed_masked_copy_leaves_no_trace_of_the_key_in_the_server_log(prod_and_staging, pg_server,
                                                                          is_local_server):
    """The server logs a failed statement's text (log_min_error_statement = error): the key is
    not in it, because it travels in the startup packet, never in SQL."""
    if not is_local_server:
        pytest.skip("reads the embedded server's log file")
    prod, staging = prod_and_staging
    key = MaskingKey(b"a key that must never be logged, 32+ chars")
    rules = load_rules(RULES)
    # Fails per row, inside the COPY: a constant 1 / 0 would fail the fragment check before it.
    fails = "CASE WHEN id = 3 THEN (1 / (id - 3))::text ELSE body END"
    rules.tables["public.reviews"].columns["body"] = ColumnRule("sql", sql=fails)
    log = pg_server.root / "server.log"
    start = log.stat().st_size
    with pytest.raises(DbSyncError, match="division by zero"):
        sync_databases(prod, staging, rules=rules, masking_key=key)
    written = log.read_bytes()[start:].decode(errors="replace")
    assert "division by zero" in written and "STATEMENT:  COPY" in written  # the statement was logged
    assert key.value.decode() not in written and key.value.hex() not in written
