"""`db-sync sync` as the Fargate task runs it (SYNC_METRICS=cloudwatch): its metrics go to CloudWatch
through PutMetricData (moto here, read back with list_metrics and get_metric_statistics), the same
namespace and dimension as the Lambda's EMF, while `--json` keeps stdout pure JSON."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from dbsync import metrics
from dbsync.cli import main

pytestmark = pytest.mark.usefixtures("no_sync_env")  # tests/dbsync/conftest.py



def published(client, namespace: str = "DbSync") -> dict[str, list[float]]:
    """{metric: [values]} in the namespace, under the one dimension both runners use."""
    now = dt.datetime.now(dt.UTC)
    out = {}
    for m in client.list_metrics(Namespace=namespace)["Metrics"]:
        assert m["Dimensions"] == [{"Name": "service", "Value": "db_sync"}]
        stats = client.get_metric_statistics(
            Namespace=namespace, MetricName=m["MetricName"], Dimensions=m["Dimensions"],
            StartTime=now - dt.timedelta(hours=1), EndTime=now + dt.timedelta(minutes=5), Period=3600,
            Statistics=["Maximum", "SampleCount"])["Datapoints"]
        out[m["MetricName"]] = [p["Maximum"] for p in stats for _ in range(int(p["SampleCount"]))]
    return out


def test_a_refresh_publishes_its_figures_and_keeps_stdout_json(prod_and_staging, cloudwatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # the whole of stdout: one JSON document
    assert published(cloudwatch) == {
        "SyncSeconds": [result["timings"]["total"]],
        "RowsCopied": [sum(t["rows"] for t in result["tables"])],
        "BytesCopied": [sum(t["bytes"] for t in result["tables"])],
        "SequencesReset": [len(result["sequences_reset"])],
        "SyncWarnings": [0.0],
        "ProdOnlyObjects": [0.0],
        "SyncSucceeded": [1.0],
    }


def test_the_namespace_is_the_lambdas_setting(prod_and_staging, cloudwatch, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "DbSync/books-staging")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn]) == 0
    assert published(cloudwatch, "DbSync/books-staging")["SyncSucceeded"] == [1.0]
    assert published(cloudwatch) == {}


def test_a_failed_refresh_publishes_failure_and_exits_2(prod_and_staging, cloudwatch, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", "staging-db.example.internal/staging")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--json"]) == 2
    captured = capsys.readouterr()
    assert "not in SYNC_TARGET_ALLOWLIST" in captured.err
    # stdout is still one JSON document: the error object.
    assert json.loads(captured.out)["error"]["exit_code"] == 2
    assert published(cloudwatch) == {"SyncSucceeded": [0.0]}


def test_some_tables_and_dry_runs_are_not_refreshes(prod_and_staging, cloudwatch, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dry_run"]
    assert published(cloudwatch) == {}
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--table", "reviews", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    figures = published(cloudwatch)
    # No SyncSucceeded: only a sync of every table is a refresh.
    assert set(figures) == {"SyncSeconds", "RowsCopied", "BytesCopied", "SequencesReset", "SyncWarnings",
                            "ProdOnlyObjects"}
    assert figures["RowsCopied"] == [sum(t["rows"] for t in result["tables"])]
    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", "staging-db.example.internal/staging")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--table", "reviews"]) == 2
    assert "SyncSucceeded" not in published(cloudwatch)  # nor does its failure count


def test_without_sync_metrics_nothing_is_published(prod_and_staging, cloudwatch, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.delenv("SYNC_METRICS")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn]) == 0
    monkeypatch.setenv("SYNC_METRICS", "none")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn]) == 0
    assert published(cloudwatch) == {}


def test_a_bad_sync_metrics_is_refused_before_anything_runs(prod_and_staging, cloudwatch, monkeypatch, capsys):
    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.setenv("SYNC_METRICS", "statsd")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn]) == 2
    assert capsys.readouterr().err == "db-sync: error: SYNC_METRICS='statsd' is not one of cloudwatch, none\n"
    assert published(cloudwatch) == {}


def test_metrics_that_cannot_be_published_never_change_the_outcome(prod_and_staging, cloudwatch, monkeypatch,
                                                                   capsys):
    prod_dsn, staging_dsn = prod_and_staging

    def refused(values, client=None):
        raise RuntimeError("AccessDenied: not authorized to perform cloudwatch:PutMetricData\nmore")

    monkeypatch.setattr(metrics, "publish_cloudwatch", refused)
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn, "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert captured.err.splitlines()[-1] == ("db-sync: warning: the run's metrics were not published: RuntimeError:"
                                             " AccessDenied: not authorized to perform cloudwatch:PutMetricData")
    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", "staging-db.example.internal/staging")
    assert main(["sync", "--source", prod_dsn, "--target", staging_dsn]) == 2  # the sync's own failure
    assert "not in SYNC_TARGET_ALLOWLIST" in capsys.readouterr().err
