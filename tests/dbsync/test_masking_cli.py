"""`db-sync check-rules` and `db-sync mask` on a real PostgreSQL, and bad rules files."""

from __future__ import annotations

import json

import psycopg2
import pytest

from dbsync.cli import main
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import load_rules
from dbsync.sync import sync_databases
from localdev.oldsync import replicate_like_old_sync_dsn
from tests.support.db import query

RULES = "backend/sync-rules.yaml"
KEY_TEXT = "cli test key, long enough: 32 chars or more"




def test_check_rules_lists_every_column_and_exits_1_on_uncovered(prod_and_staging, tmp_path, capsys):
    prod, _ = prod_and_staging
    assert main(["check-rules", "--dsn", prod, "--rules", RULES, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by = {(c["table"], c["column"]): c["rule"] for c in report["columns"]}
    assert by[("public.users", "email")] == "email" and by[("public.books", "title")] == "as is"
    partial = tmp_path / "partial.yaml"
    partial.write_text("tables:\n  public.users:\n    columns:\n      email: email\n")
    assert main(["check-rules", "--dsn", prod, "--rules", str(partial)]) == 1
    out = capsys.readouterr().out
    assert "display_name" in out and "uncovered" in out


def test_mask_in_place_gives_exactly_what_the_sync_gives(prod_and_staging, make_db, monkeypatch):
    """A raw copy of prod, masked in place, holds exactly what the masked sync writes."""
    prod, staging = prod_and_staging
    sync_databases(prod, staging, rules=load_rules(RULES), masking_key=MaskingKey(KEY_TEXT.encode()))
    clone = make_db("clone")
    replicate_like_old_sync_dsn(prod, clone)
    sync_databases(prod, clone)  # unmasked: prod's raw rows, as a restored snapshot has them
    before = query(clone, "SELECT last_value, is_called FROM users_id_seq")
    monkeypatch.setenv("SYNC_MASKING_KEY", KEY_TEXT)
    assert main(["mask", "--dsn", clone, "--rules", RULES]) == 0
    for text in ("SELECT id, email, display_name, created_at FROM users ORDER BY id",
                 "SELECT id, body FROM reviews ORDER BY id", "SELECT * FROM authors ORDER BY id"):
        assert query(clone, text) == query(staging, text)
    assert query(clone, "SELECT last_value, is_called FROM users_id_seq") == before


def test_mask_refuses_the_configured_source(prod_and_staging, monkeypatch, capsys):
    prod, _ = prod_and_staging
    before = query(prod, "SELECT email FROM users ORDER BY id")
    monkeypatch.setenv("SOURCE_DATABASE_URL", prod)
    monkeypatch.setenv("SYNC_MASKING_KEY", KEY_TEXT)
    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", psycopg2.extensions.parse_dsn(prod)["dbname"])
    assert main(["mask", "--dsn", prod, "--rules", RULES]) == 2
    assert "refusing to mask the configured source" in capsys.readouterr().err
    assert query(prod, "SELECT email FROM users ORDER BY id") == before


@pytest.mark.parametrize(("text", "expected"), [
    ("tables:\n  public.users:\n    columns:\n      email: [unclosed\n", "rules.yaml line "),
    ("tables:\n  public.users:\n    columns:\n      email: scramble\n", "unknown strategy 'scramble'"),
    ("tables:\n  public.nope:\n    columns:\n      x: keep\n", "public.nope: no such table"),
    ("tables:\n  public.users:\n    columns:\n      nope: keep\n", "public.users.nope: no such column"),
    ("tables:\n  public.users:\n    columns:\n      email: null\n", "null on a NOT NULL column"),
    ("tables:\n  public.users:\n    columns:\n      id: hash\n", "primary key"),
    ("tables:\n  public.users:\n    columns:\n      email: redact\n", "unique column"),
    ("tables:\n  public.users:\n    columns:\n      created_at: email\n", "does not fit timestamp"),
    ("tables:\n  public.reviews:\n    where: \"true) TO STDOUT; COMMIT; CREATE TABLE pwned (x int\"\n",
     "is not one expression"),
    ("tables:\n  public.reviews:\n    columns:\n      body: {sql: \"current_setting('dbsync.mask_key')\"}\n",
     "must not read the masking key"),
    (open(RULES).read() + "  public.books:\n    where: \"no_such_column > 1\"\n", "no_such_column"),
    (open(RULES).read() + "  public.reviews:\n    rows: none\n", "'public.reviews' is given twice"),
    ("tables:\n  public.books:\n    columns:\n      owner_id: {value: 7}\n", "foreign key"),
])
def test_each_bad_rules_file_is_one_line_and_changes_nothing(prod_and_staging, tmp_path, capsys, monkeypatch,
                                                             text, expected):
    prod, staging = prod_and_staging
    before = query(staging, "SELECT count(*) FROM books")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    monkeypatch.setenv("SYNC_MASKING_KEY", KEY_TEXT)
    assert main(["sync", "--source", prod, "--target", staging, "--rules", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1 + err.count("warning")
    assert query(staging, "SELECT count(*) FROM books") == before
    assert query(prod, "SELECT count(*) FROM pg_class WHERE relname = 'pwned'") == [(0,)]
