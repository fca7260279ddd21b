"""`db-sync sync`: JSON and text output, defaults from the environment, progress on a terminal only,
one-line errors and exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import psycopg2.extensions
import pytest

from dbsync.cli import main

pytestmark = pytest.mark.usefixtures("no_sync_env")  # tests/dbsync/conftest.py


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
    # not a terminal: no progress lines; only the warning that nothing is masked, naming the columns
    assert "[1/" not in captured.err
    assert captured.err.startswith("db-sync: warning: no masking rules") and "public.users.email" in captured.err


def test_sync_text_output_with_progress_on_a_terminal(prod_and_staging, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("synced 6 table(s)") and "row counts validated" in captured.out
    # each table's line as tqdm leaves it (dbsync.progress; the pseudo-terminal test: test_cli_progress.py)
    drawn = captured.err.replace("\r", "\n").splitlines()
    books = [line for line in drawn if line.startswith("[3/6] public.books: ")]
    assert books and re.search(r"100%\|.*\| (\d+)/\1 rows, [\d.]+ MB, [\d.]+ MB/s", books[-1]), books
    assert all(any(line.startswith(f"[{i}/6] ") for line in drawn) for i in range(1, 7))


def test_sync_errors_are_one_line_with_exit_2(prod_and_staging, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    assert main(["sync", "--source", prod_dsn]) == 2
    assert capsys.readouterr().err == ("db-sync: error: no target database configured: pass --target URL or set"
                                       " TARGET_DATABASE_URL or TARGET_DB_SECRET_ARN\n")
    assert main(["sync", "--target", staging_dsn]) == 2
    assert capsys.readouterr().err == ("db-sync: error: no source database configured: pass --source URL or set"
                                       " SOURCE_DATABASE_URL or SOURCE_DB_SECRET_ARN\n")
    assert main(["sync", "--source", prod_dsn, "--target", prod_dsn]) == 2
    assert "source and target are the same database" in capsys.readouterr().err

    bad = "postgresql://someone:wrong-secret-pw@127.0.0.1:1/staging"  # nothing listens on port 1
    proc = subprocess.run([sys.executable, "-m", "dbsync.cli", "sync", "--source", prod_dsn, "--target", bad],
                          capture_output=True, text=True, cwd="backend", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("db-sync: error: cannot connect to the target database")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "wrong-secret-pw" not in proc.stderr


def test_secrets_configure_the_cli_as_they_configure_the_lambda(prod_and_staging, pg_server, monkeypatch, capsys):
    """SOURCE_DB_SECRET_ARN / TARGET_DB_SECRET_ARN (+ *_DB_HOST/PORT/NAME) mean the same here."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    parameters.clear_caches()
    with mock_aws():
        client = boto3.client("secretsmanager")
        for side, dsn in (("SOURCE", prod_dsn), ("TARGET", staging_dsn)):
            name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
            p = psycopg2.extensions.parse_dsn(pg_server.dsn(name, via="127.0.0.1"))
            arn = client.create_secret(Name=f"{side.lower()}-db", SecretString=json.dumps(
                {"username": p["user"], "password": p.get("password", "")}))["ARN"]
            monkeypatch.setenv(f"{side}_DB_SECRET_ARN", arn)
            monkeypatch.setenv(f"{side}_DB_HOST", p["host"])
            monkeypatch.setenv(f"{side}_DB_PORT", p["port"])
            monkeypatch.setenv(f"{side}_DB_NAME", p["dbname"])
        assert main(["sync", "--dry-run", "--json"]) == 0
    parameters.clear_caches()
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] and out["source"].startswith("secret arn:aws:secretsmanager:")
