"""Messages a new user meets first: each says what to do (issue 21)."""

from __future__ import annotations

import psycopg2.extensions
import pytest
from psycopg2 import sql

from dbsync.cli import main
from tests.support.db import execute, snapshot

pytestmark = pytest.mark.usefixtures("no_sync_env")  # tests/dbsync/conftest.py


def _login(pg_server, dsn: str, role: str) -> str:
    execute(dsn, sql.SQL("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) THEN"
                         " CREATE ROLE {role} LOGIN; END IF; END$$").format(name=sql.Literal(role),
                                                                             role=sql.Identifier(role)),
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(role + "-pw")))
    return pg_server.dsn(psycopg2.extensions.parse_dsn(dsn)["dbname"], user=role, password=role + "-pw")


def test_the_source_roles_missing_select_is_found_before_any_write(pg_server, make_db, capsys):
    src, tgt = make_db("sel_src"), make_db("sel_tgt")
    reader = _login(pg_server, src, "dbsync_partial_reader")
    tables = ("CREATE TABLE a (id int PRIMARY KEY)", "CREATE TABLE b (id int PRIMARY KEY, secret text)",
              "CREATE TABLE c (id int PRIMARY KEY)")
    execute(src, *tables, "INSERT INTO a VALUES (1)", "INSERT INTO b VALUES (1, 's')", "INSERT INTO c VALUES (1)",
            "GRANT SELECT ON a TO dbsync_partial_reader", "GRANT SELECT (id) ON b TO dbsync_partial_reader")
    execute(tgt, *tables, "INSERT INTO a VALUES (7)")
    before = snapshot(tgt)
    assert main(["sync", "--source", reader, "--target", tgt]) == 2
    err = capsys.readouterr().err
    # every table, the role, and the GRANT; a column grant short of the copied columns counts too
    assert err == ("db-sync: error: the source role dbsync_partial_reader may not SELECT from 2 table(s) the sync"
                   " copies: public.b, public.c; run on prod GRANT SELECT ON public.b, public.c TO"
                   " dbsync_partial_reader (or leave them out with --table); nothing was written\n")
    assert snapshot(tgt) == before


def test_check_sequences_gives_the_grant_and_lists_a_partitioned_table_once(db_dsn, capsys):
    execute(db_dsn, "CREATE TABLE ev (id serial, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
            "CREATE TABLE ev1 PARTITION OF ev FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')",
            "CREATE TABLE ev2 PARTITION OF ev FOR VALUES FROM ('2021-01-01') TO ('2022-01-01')",
            "INSERT INTO ev (at) SELECT date '2020-06-01' + g FROM generate_series(1, 400) g",
            "SELECT setval('ev_id_seq', 3)", "CREATE TABLE t (id serial PRIMARY KEY, v text)",
            "DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dbsync_app') THEN"
            " CREATE ROLE dbsync_app NOLOGIN; END IF; END$$",
            "GRANT INSERT ON t TO dbsync_app")
    assert main(["check-sequences", "--dsn", db_dsn]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out[2:-2]] == ["ev", "t"]  # not ev1, ev2: they inherit ev's default
    assert "its INSERTs fail until GRANT USAGE ON SEQUENCE public.t_id_seq TO dbsync_app" in out[3]
    assert out[-2] == "1 column(s) would fail or collide on INSERT: run `db-sync reset-sequences`"
    assert out[-1] == ("1 missing USAGE grant(s), which only a GRANT fixes: run GRANT USAGE ON SEQUENCE"
                       " public.t_id_seq TO dbsync_app")


def test_masking_off_by_choice_is_one_line(prod_and_staging, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.setenv("SYNC_RULES_FILE", "none")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--quiet"]) == 0
    assert capsys.readouterr().err == ("db-sync: masking is off by choice (SYNC_RULES_FILE=none): rows travel as"
                                       " they are\n")
    monkeypatch.delenv("SYNC_RULES_FILE")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--quiet"]) == 0
    assert "warning: no masking rules" in capsys.readouterr().err  # unset is not a choice: still warned


def test_json_output_is_the_document_one_entry_per_line():
    """--json: the same document json.loads reads back, a list of objects one entry per line."""
    import json

    from dbsync.cli.common import as_json

    document = {"ok": True, "counts": {"reset": 2}, "sequences": [{"table": "a", "value": 1}, {"table": "b"}],
                "notes": [], "when": None}
    text = as_json(document)
    assert json.loads(text) == document
    assert text.splitlines()[4:7] == ['    {"table": "a", "value": 1},', '    {"table": "b"}', "  ],"]
