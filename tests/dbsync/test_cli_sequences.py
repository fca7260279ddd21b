"""`db-sync reset-sequences` / `check-sequences`: output, exit codes, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2

from dbsync.cli import main

DB_SYNC = str(Path(sys.executable).with_name("db-sync"))


def test_check_fails_before_and_passes_after_a_reset(prod_and_staging, capsys):
    _, staging = prod_and_staging
    assert main(["check-sequences", "--dsn", staging]) == 1
    out = capsys.readouterr().out
    assert "books" in out and "would fail or collide" in out

    assert main(["reset-sequences", "--dsn", staging, "--dry-run"]) == 0
    assert "(dry run)" in capsys.readouterr().out
    assert main(["check-sequences", "--dsn", staging]) == 1
    capsys.readouterr()

    assert main(["reset-sequences", "--dsn", staging, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["sequence_created"] == 4 and report["counts"]["error"] == 0
    assert {r["table"] for r in report["sequences"]} == {"users", "authors", "books", "reviews"}

    assert main(["check-sequences", "--dsn", staging, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ok": True, "problems": [], "unverifiable": []}


def test_database_url_is_the_default_and_the_console_script_runs(prod_and_staging):
    _, staging = prod_and_staging
    env = dict(os.environ, DATABASE_URL=staging)
    done = subprocess.run([DB_SYNC, "reset-sequences", "--no-create"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stdout or "no sequence-fed columns" in done.stdout
    done = subprocess.run([DB_SYNC, "reset-sequences"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "4 sequence_created" in done.stdout


def test_a_column_in_error_exits_1(db_dsn, capsys):
    conn = psycopg2.connect(db_dsn)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE full_up (id serial PRIMARY KEY); INSERT INTO full_up VALUES (2147483647)")
    conn.commit()
    conn.close()
    assert main(["reset-sequences", "--dsn", db_dsn]) == 1
    assert "MAXVALUE" in capsys.readouterr().out


def test_bad_input_is_one_line_without_traceback_or_password(pg_server, is_local_server):
    secret = "s3cr3t-Pa55word"
    cases = [
        ["check-sequences", "--dsn", "not a url at all ==="],
        ["check-sequences", "--dsn", f"postgresql://nobody:{secret}@127.0.0.1:1/none?connect_timeout=2"],
        ["reset-sequences", "--dsn", pg_server.dsn("no_such_database_here")],
    ]
    if is_local_server:
        cases.append(["reset-sequences", "--dsn", pg_server.dsn("postgres", via="127.0.0.1", password=secret,
                                                                  user="postgres")])
    for argv in cases:
        done = subprocess.run([DB_SYNC, *argv], capture_output=True, text=True, env={
            k: v for k, v in os.environ.items() if k != "DATABASE_URL"})
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("db-sync: error: "), done.stderr
        assert "Traceback" not in done.stderr and secret not in done.stderr
        if "no_such_database_here" in argv[-1]:
            assert lines[0].startswith("db-sync: error: cannot connect to the database (")
    done = subprocess.run([DB_SYNC, "check-sequences"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})
    assert done.returncode == 2 and "no database given" in done.stderr
