"""`verify` on a real PostgreSQL: clean right after a sync (full or incremental, with or without
masking), prod's later writes attributed, and each way of tampering with staging, one at a time,
named and exit 1; `sync --verify` fails and rolls back a sync whose copy went wrong."""

from __future__ import annotations

import json

import psycopg2
import pytest

from dbsync import cli
from dbsync.errors import DbSyncError
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import load_rules
from dbsync.sync import phases, sync_databases
from dbsync.verify import verify_databases
from localdev.oldsync import replicate_like_old_sync_dsn
from localdev.sampledata import build_prod
from tests.support.db import execute, query, snapshot

RULES = "backend/sync-rules.yaml"
KEY = MaskingKey(b"verify test key, 32 characters or more!")


def prod_and_synced_staging(make_db, **sync_options) -> tuple[str, str]:
    """A small prod and a staging synced from it with `sync_options`."""
    prod, staging = make_db("vprod"), make_db("vstaging")
    conn = psycopg2.connect(prod)
    build_prod(conn, scale=0.001)
    conn.close()
    replicate_like_old_sync_dsn(prod, staging)
    sync_databases(prod, staging, **sync_options)
    return prod, staging


@pytest.fixture
def synced(make_db, no_allowlist, monkeypatch):
    """A small prod and a staging synced from it with the shipped rules: (prod, staging)."""
    prod, staging = prod_and_synced_staging(make_db, rules=load_rules(RULES), masking_key=KEY)
    monkeypatch.setenv("SYNC_MASKING_KEY", KEY.value.decode())
    monkeypatch.delenv("SYNC_MASKING_KEY_SECRET_ARN", raising=False)
    monkeypatch.delenv("SYNC_METRICS", raising=False)
    return prod, staging


def verify(prod: str, staging: str, *extra: str, capsys) -> tuple[int, dict]:
    """`db-sync verify --json` with the shipped rules: (exit code, report)."""
    code = cli.main(["verify", "--source", prod, "--target", staging, "--rules", RULES, "--json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


def kinds(report: dict) -> set[tuple[str, str | None]]:
    return {(f["kind"], f["table"]) for f in report["findings"]}


def test_clean_right_after_a_full_sync(synced, capsys):
    code, report = verify(*synced, capsys=capsys)
    assert code == 0, report
    assert report["ok"] and report["findings"] == []
    books = next(t for t in report["tables"] if t["table"] == "public.books")
    assert books["source_rows"] == books["target_rows"] > 0 and books["attributed"] == "since the last sync"


def test_clean_right_after_an_incremental_sync_and_attributes_prods_writes_since(synced, capsys):
    prod, staging = synced
    execute(prod, "UPDATE books SET title = title || ' (2nd ed.)' WHERE id % 5 = 0",
            "UPDATE users SET email = 'changed' || id || '@corp.test' WHERE id % 7 = 0")
    result = sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True)
    assert {t["table"]: t["mode"] for t in result["tables"]}["public.books"] == "delta"
    assert verify(prod, staging, capsys=capsys)[0] == 0
    execute(prod, "UPDATE books SET title = 'later' WHERE id % 9 = 1", "DELETE FROM reviews WHERE id % 11 = 3",
            "INSERT INTO authors (name) VALUES ('new on prod')")
    code, report = verify(prod, staging, capsys=capsys)
    assert code == 0, report["findings"]
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["public.books"]["written_on_prod"] > 0 and tables["public.reviews"]["written_on_prod"] > 0
    assert tables["public.authors"]["written_on_prod"] == 1 and tables["public.books"]["unexplained"] == 0
    assert any("prod wrote them since the last sync" in n for n in report["notes"])
    code, report = verify(prod, staging, "--strict", capsys=capsys)
    assert code == 1 and ("difference", "public.books") in kinds(report)


def test_clean_without_masking_and_says_the_personal_checks_were_skipped(make_db, no_allowlist, capsys):
    prod, staging = prod_and_synced_staging(make_db)
    code = cli.main(["verify", "--source", prod, "--target", staging, "--rules", "none"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "personal-data checks and the gate were skipped" in out and out.strip().endswith("clean")


# One way of tampering with staging at a time: (statements on staging, the finding verify --strict
# names, whether plain verify finds it too).
TAMPERING = {
    "a changed value": (["UPDATE books SET title = 'tampered' WHERE id = 3"], ("difference", "public.books"), False),
    "two rows' values swapped": (["UPDATE books b SET title = o.title FROM books o"
                                  " WHERE (b.id, o.id) IN ((3, 4), (4, 3))"], ("difference", "public.books"), False),
    "a value made NULL": (["UPDATE books SET isbn = NULL WHERE id = 3"], ("difference", "public.books"), False),
    # Every seed of hashint8extended hashes v and v # (2^32 + 1) alike (it folds 64 bits to 32 by XOR).
    "a bigint changed to one its own hash folds alike": (
        ["ALTER TABLE reviews DISABLE TRIGGER ALL", "UPDATE reviews SET user_id = user_id # 4294967297"
         " WHERE id = 3", "ALTER TABLE reviews ENABLE TRIGGER ALL"], ("difference", "public.reviews"), False),
    "a timestamp changed so": (  # its microseconds since 2000 (what its hash folds) changed alike
        ["UPDATE books SET created_at = timestamptz '2000-01-01 00:00:00+00' + interval '1 microsecond' * (((extract("
         "epoch FROM created_at - timestamptz '2000-01-01 00:00:00+00') * 1000000)::bigint # 4294967297))"
         " WHERE id = 3"], ("difference", "public.books"), False),
    "a nullable bigint changed so": (
        ["ALTER TABLE books DISABLE TRIGGER ALL", "UPDATE books SET owner_id = owner_id # 4294967297"
         " WHERE id = 3", "ALTER TABLE books ENABLE TRIGGER ALL"], ("difference", "public.books"), False),
    "an extra row": (["INSERT INTO authors (id, name) VALUES (99999, 'extra')"], ("difference", "public.authors"),
                     False),
    "a missing row": (["DELETE FROM reviews WHERE id = 2"], ("difference", "public.reviews"), False),
    "a table truncated": (["TRUNCATE book_authors"], ("difference", "public.book_authors"), False),
    "a raw prod email": (["UPDATE users SET email = '{raw_email}' WHERE id = 5"], ("personal_data", "public.users"),
                         True),
    "a raw prod name in its own row": (["UPDATE users SET display_name = '{raw_name}' WHERE id = 2"],
                                       ("personal_data", "public.users"), True),
    "a row whose parent is gone": (["ALTER TABLE reviews DISABLE TRIGGER ALL", "DELETE FROM reviews WHERE id = 4",
                                    "ALTER TABLE reviews ENABLE TRIGGER ALL",
                                    "ALTER TABLE book_authors DISABLE TRIGGER ALL",
                                    "INSERT INTO book_authors (book_id, author_id) VALUES (1, 424242)",
                                    "ALTER TABLE book_authors ENABLE TRIGGER ALL"],
                                   ("dangling_reference", "public.book_authors"), True),
    "a sequence behind": (["SELECT setval(pg_get_serial_sequence('books', 'id'), 1)"], ("sequence", "public.books"),
                          True),
    "a constraint made NOT VALID": (["ALTER TABLE reviews DROP CONSTRAINT reviews_user_id_fkey",
                                     "ALTER TABLE reviews ADD CONSTRAINT reviews_user_id_fkey FOREIGN KEY (user_id)"
                                     " REFERENCES users (id) NOT VALID"], ("not_valid", "public.reviews"), True),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_each_tampering_is_named_and_exits_1(synced, capsys, case):
    prod, staging = synced
    statements, expected, plain_too = TAMPERING[case]
    raw_email, raw_name = query(prod, "SELECT email, display_name FROM users WHERE id = 2")[0]
    execute(staging, *(s.format(raw_email=raw_email, raw_name=raw_name) for s in statements))
    code, report = verify(prod, staging, "--strict", capsys=capsys)
    assert code == 1 and expected in kinds(report), report["findings"]
    code, report = verify(prod, staging, capsys=capsys)
    assert (expected in kinds(report)) == plain_too, report["findings"]
    assert code == (1 if report["findings"] else 0)
    if plain_too:
        assert raw_email not in json.dumps(report) and raw_name not in json.dumps(report)  # keys, never values


def test_raw_emails_are_found_whatever_form_prods_take(make_db, no_allowlist, capsys, monkeypatch):
    """Only staging's values outside the outputs' form are looked for on prod, unless prod holds
    a value of that form: then every raw value is, and a copy of one is still found."""
    prod, staging = prod_and_synced_staging(make_db)
    monkeypatch.setenv("SYNC_MASKING_KEY", KEY.value.decode())
    lookalike = "user-0123456789abcdef0123456789abcdef@example.com"
    set_lookalike = "UPDATE users SET email = 'user-0123456789abcdef0123456789abcdef@example.com' WHERE id = {}"
    execute(prod, set_lookalike.format(3))
    sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY)
    execute(staging, "INSERT INTO users (email, display_name) VALUES ('qa-signup@corp.test', 'QA')")
    code, report = verify(prod, staging, capsys=capsys)
    assert code == 0, report["findings"]  # a staging write outside the form that prod lacks: no leak
    execute(staging, set_lookalike.format(4))
    code, report = verify(prod, staging, capsys=capsys)
    leaks = [f for f in report["findings"] if f["kind"] == "personal_data"]
    assert code == 1 and [f["column"] for f in leaks] == ["email"], report["findings"]
    assert "anywhere in the column" in leaks[0]["detail"] and lookalike not in json.dumps(report)


def _corrupting_copy(monkeypatch):
    """The sync's own copy writes a wrong title into one row of books."""
    real = phases.stream_copy

    def corrupt(source, target, copy_out, copy_in, **kw):
        result = real(source, target, copy_out, copy_in, **kw)
        if "books" in copy_in.as_string(target) and "book_authors" not in copy_in.as_string(target):
            with target.cursor() as cur:
                cur.execute("UPDATE books SET title = 'written wrong by the sync' WHERE id = 6")
        return result

    monkeypatch.setattr(phases, "stream_copy", corrupt)


def test_a_wrong_value_the_sync_itself_wrote_is_unexplained(synced, capsys, monkeypatch):
    prod, staging = synced
    _corrupting_copy(monkeypatch)
    sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY)
    code, report = verify(prod, staging, capsys=capsys)
    assert code == 1
    (finding,) = [f for f in report["findings"] if f["kind"] == "difference"]
    assert finding["table"] == "public.books" and finding["written_by"] == "unexplained"
    assert finding["keys"] == ["id = 6"]


def test_sync_verify_fails_a_corrupted_copy_and_leaves_staging_as_it_was(synced, monkeypatch):
    prod, staging = synced
    execute(prod, "UPDATE books SET title = 'new on prod' WHERE id = 2")
    before = snapshot(staging)
    _corrupting_copy(monkeypatch)
    with pytest.raises(DbSyncError, match=r"public\.books.*id = 6") as failed:
        sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, verify=True)
    assert failed.value.phase == "verify"
    assert snapshot(staging) == before


def test_sync_verify_passes_a_good_sync_and_records_it(synced):
    prod, staging = synced
    execute(prod, "UPDATE books SET title = 'new on prod' WHERE id = 2")
    result = sync_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY, incremental=True, verify=True)
    assert result["verify"]["tables"] == len(result["tables"]) and result["verify"]["rows"] > 0
    assert query(staging, "SELECT tables, rows FROM dbsync.sync_verified") == [
        (result["verify"]["tables"], result["verify"]["rows"])]


def test_verify_writes_nothing_anywhere(synced):
    prod, staging = synced
    before = snapshot(prod), snapshot(staging)
    report = verify_databases(prod, staging, rules=load_rules(RULES), masking_key=KEY)
    assert report["ok"], report["findings"]
    assert (snapshot(prod), snapshot(staging)) == before
