"""`db-sync sync`: JSON and text output, defaults from the environment, progress on a terminal only,
one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dbsync.cli import main


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for var in ("SOURCE_DATABASE_URL", "TARGET_DATABASE_URL", "SYNC_TARGET_ALLOWLIST", "LOCK_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)


def test_sync_json_and_env_defaults(prod_and_staging, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] and len(out["tables"]) == 6

    monkeypatch.setenv("SOURCE_DATABASE_URL", prod_dsn)
    monkeypatch.setenv("TARGET_DATABASE_URL", staging_dsn)
    assert main(["sync", "--table", "public.users", "--table", "reviews", "--table", "books",
                 "--table", "book_authors", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert [t["table"] for t in result["tables"]] == ["public.book_authors", "public.books", "public.reviews",
                                                     "public.users"]
    assert captured.err == ""  # not a terminal: no progress lines


def test_sync_text_output_with_progress_on_a_terminal(prod_and_staging, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("synced 6 table(s)") and "row counts validated" in captured.out
    progress = captured.err.splitlines()
    assert len(progress) == 6 and progress[2].startswith("  [3/6] public.books: ")
    assert "rows" in progress[2] and "MB/s" in progress[2]


def test_sync_errors_are_one_line_with_exit_2(prod_and_staging, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    assert main(["sync", "--source", prod_dsn]) == 2
    assert capsys.readouterr().err == ("db-sync: error: no target database given: pass --target URL or set"
                                       " TARGET_DATABASE_URL\n")
    assert main(["sync", "--source", prod_dsn, "--target", prod_dsn]) == 2
    assert "source and target are the same database" in capsys.readouterr().err

    bad = "postgresql://someone:wrong-secret-pw@127.0.0.1:1/staging"  # nothing listens on port 1
    proc = subprocess.run([sys.executable, "-m", "dbsync.cli", "sync", "--source", prod_dsn, "--target", bad],
                          capture_output=True, text=True, cwd="backend", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("db-sync: error: cannot connect to the target database")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "wrong-secret-pw" not in proc.stderr
