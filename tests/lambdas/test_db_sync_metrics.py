"""The db_sync Lambda's metrics, read from what it prints: one embedded-metric-format line on stdout
per sync (Lambda's log pipeline turns it into CloudWatch metrics). A refresh reports its figures and
SyncSucceeded = 1; a failed refresh SyncSucceeded = 0 and still raises; a sync of some tables, a
dry run and the sequence check report no SyncSucceeded."""

from __future__ import annotations

import json

import pytest

from dbsync import metrics
from dbsync.errors import DbSyncError
from tests.support.lambda_context import FakeLambdaContext as Context

SCHEDULED_EVENT = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
                   "account": "123456789012", "region": "eu-west-1", "detail": {}}


# aws (moto, the sync's variables cleared) and handler_logs (the handler's log lines, kept off
# stdout) are fixtures of tests/lambdas/conftest.py.


def test_a_refresh_reports_its_figures_and_success(emf):
    from lambdas.db_sync.handler import lambda_handler

    result = lambda_handler(SCHEDULED_EVENT, Context())
    (line,) = emf()
    assert line["namespace"] == "DbSync" and line["dimensions"] == [["service"]] and line["service"] == "db_sync"
    assert line["values"] == {
        "SyncSeconds": result["timings"]["total"],
        "RowsCopied": sum(t["rows"] for t in result["tables"]),
        "BytesCopied": sum(t["bytes"] for t in result["tables"]),
        "SequencesReset": len(result["sequences_reset"]),
        "SyncWarnings": 0,
        "ProdOnlyObjects": 0,
        "SyncSucceeded": 1,
    }
    assert line["values"]["RowsCopied"] > 0 and line["values"]["SequencesReset"] >= 4
    assert line["units"] == {"SyncSeconds": "Seconds", "RowsCopied": "Count", "BytesCopied": "Bytes",
                             "SequencesReset": "Count", "SyncWarnings": "Count", "ProdOnlyObjects": "Count",
                             "SyncSucceeded": "Count"}
    assert line["values"] == metrics.sync_values(result, refresh=True)


def test_the_namespace_comes_from_the_environment(emf, monkeypatch):
    from lambdas.db_sync.handler import lambda_handler

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "DbSync/books-staging")
    lambda_handler(SCHEDULED_EVENT, Context())
    (line,) = emf()
    assert line["namespace"] == "DbSync/books-staging" and line["values"]["SyncSucceeded"] == 1


def test_a_failed_refresh_reports_failure_and_still_raises(emf, monkeypatch, handler_logs):
    from lambdas.db_sync.handler import lambda_handler

    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", "staging-db.example.internal/staging")
    with pytest.raises(DbSyncError, match="not in SYNC_TARGET_ALLOWLIST"):
        lambda_handler(SCHEDULED_EVENT, Context())
    (line,) = emf()
    assert line["values"] == {"SyncSucceeded": 0} and line["namespace"] == "DbSync"
    assert line["service"] == "db_sync"
    assert any(json.loads(x)["message"] == "db_sync failed" for x in handler_logs.getvalue().splitlines())


def test_a_refresh_that_cannot_even_start_reports_failure(emf, monkeypatch):
    from lambdas.db_sync.handler import lambda_handler

    monkeypatch.delenv("SOURCE_DATABASE_URL")
    with pytest.raises(DbSyncError, match="no source database configured"):
        lambda_handler(SCHEDULED_EVENT, Context())
    assert [line["values"] for line in emf()] == [{"SyncSucceeded": 0}]


def test_a_sync_of_some_tables_is_not_a_refresh(emf, monkeypatch):
    from lambdas.db_sync.handler import lambda_handler

    result = lambda_handler({"action": "sync", "tables": ["reviews"]}, Context())
    (line,) = emf()
    assert "SyncSucceeded" not in line["values"]
    assert line["values"]["RowsCopied"] == sum(t["rows"] for t in result["tables"])
    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", "staging-db.example.internal/staging")
    with pytest.raises(DbSyncError):
        lambda_handler({"action": "sync", "tables": ["reviews"]}, Context())
    assert emf() == []  # nor is its failure


def test_dry_runs_checks_and_bad_events_report_nothing(emf):
    from lambdas.db_sync.handler import lambda_handler

    assert lambda_handler({"action": "sync", "dry_run": True}, Context())["dry_run"]
    assert lambda_handler({"action": "check-sequences"}, Context())["ok"] is False  # the old sync's staging
    with pytest.raises(DbSyncError):
        lambda_handler({"action": "drop-everything"}, Context())
    assert emf() == []


def test_verify_reports_its_findings_and_leaks(emf, prod_and_staging):
    from lambdas.db_sync.handler import lambda_handler
    from tests.support.db import execute

    lambda_handler({"action": "sync"}, Context())
    emf()
    clean = lambda_handler({"action": "verify"}, Context())
    assert clean["ok"] and clean["findings"] == []
    assert any("personal-data checks" in n for n in clean["notes"])  # no rules: the opt-out, said once
    (line,) = emf()
    assert line["values"] == {"VerifyFindings": 0, "PersonalDataLeaks": 0}
    assert line["units"] == {"VerifyFindings": "Count", "PersonalDataLeaks": "Count"}
    execute(prod_and_staging[1], "SELECT setval(pg_get_serial_sequence('books', 'id'), 1)")
    found = lambda_handler({"action": "verify"}, Context())  # findings are an answer, not a failure
    assert not found["ok"] and [f["kind"] for f in found["findings"]] == ["sequence"]
    (line,) = emf()
    assert line["values"] == metrics.verify_values(found) == {"VerifyFindings": 1, "PersonalDataLeaks": 0}
