"""The sync's CloudWatch metrics: what one run reports, and the two ways it reaches CloudWatch.

After a sync of every table (a *refresh*): `SyncSeconds`, `RowsCopied`, `BytesCopied`,
`SequencesReset`, `SyncWarnings`, `ProdOnlyObjects` (prod's tables and columns staging lacks, not
copied: the drift policy must not let the synced set shrink unseen) and `SyncSucceeded` = 1;
after a refresh that failed, `SyncSucceeded` = 0 alone.
A sync narrowed to some tables is not a refresh: it reports the first four, never
`SyncSucceeded` (the freshness alarm must not count it), and nothing when it fails. A dry run
and the sequence check report nothing. A verify (dbsync.verify) reports `VerifyFindings` and
`PersonalDataLeaks`.

Namespace `DbSync` unless POWERTOOLS_METRICS_NAMESPACE names another (the template sets it);
one dimension, `service` = `db_sync`, on every metric, so that the freshness alarm watches the
same series whichever runner published it:

  - the Lambda: `publish_emf`, the powertools `Metrics` utility flushed to stdout as embedded
    metric format (Lambda's log pipeline turns those lines into metrics);
  - the Fargate task (`db-sync sync` with SYNC_METRICS=cloudwatch): `publish_cloudwatch`,
    PutMetricData through boto3 — the awslogs driver sets no EMF header, so EMF lines there
    would stay plain log lines. Nothing is printed: `db-sync sync --json` keeps stdout pure JSON.

`recorded()` ties a run to a publisher, so that a failure is reported before it propagates.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from dbsync.errors import DbSyncError

DEFAULT_NAMESPACE = "DbSync"
SERVICE = "db_sync"
DIMENSIONS = {"service": SERVICE}

# name → CloudWatch unit
UNITS = {"SyncSeconds": "Seconds", "RowsCopied": "Count", "BytesCopied": "Bytes", "SequencesReset": "Count",
         "SyncWarnings": "Count", "ProdOnlyObjects": "Count", "SyncSucceeded": "Count", "VerifyFindings": "Count",
         "PersonalDataLeaks": "Count"}

METRICS_OPTIONS = ("cloudwatch", "none")

Values = dict[str, float]
Publisher = Callable[[Values], None]


def namespace(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get("POWERTOOLS_METRICS_NAMESPACE") or "").strip() or DEFAULT_NAMESPACE


def counts_as_refresh(tables, dry_run: bool) -> bool:
    """Only a real sync of every table refreshes staging (what the freshness alarm watches)."""
    return not tables and not dry_run


def sync_values(result: Mapping, *, refresh: bool) -> Values:
    """The metric values of a sync that returned `result` (dbsync.sync's report)."""
    drift = result.get("schema_drift") or {}
    values = {
        "SyncSeconds": float(result["timings"]["total"]),
        "RowsCopied": float(sum(t.get("rows", 0) for t in result["tables"])),
        "BytesCopied": float(sum(t.get("bytes", 0) for t in result["tables"])),
        "SequencesReset": float(len(result["sequences_reset"])),
        "SyncWarnings": float(len(result.get("warnings", []))),  # e.g. the sync's record not written
        "ProdOnlyObjects": float(sum(len(drift.get(k, [])) for k in ("prod_only_tables", "prod_only_columns"))),
    }
    if refresh:
        values["SyncSucceeded"] = 1.0
    return values


def verify_values(report: Mapping) -> Values:
    """What a verify reports (dbsync.verify): its findings, and among them raw personal data on
    staging (each alarmed, template.yaml)."""
    return {"VerifyFindings": float(len(report["findings"])),
            "PersonalDataLeaks": float(sum(1 for f in report["findings"] if f["kind"] == "personal_data"))}


def failure_values() -> Values:
    """What a refresh that failed reports."""
    return {"SyncSucceeded": 0.0}


def publish_emf(values: Values) -> None:
    """The Lambda's publisher: powertools Metrics, flushed at once to stdout as one EMF line."""
    from aws_lambda_powertools import Metrics

    metrics = Metrics(namespace=namespace(), service=SERVICE)
    for name, value in values.items():
        metrics.add_metric(name=name, unit=UNITS[name], value=value)
    metrics.flush_metrics()


def publish_cloudwatch(values: Values, client=None) -> None:
    """The Fargate task's publisher: one PutMetricData call, same namespace and dimension."""
    if client is None:
        try:
            import boto3
        except ImportError:
            from dbsync.secrets import NEEDS_AWS_EXTRA

            raise DbSyncError(f"SYNC_METRICS=cloudwatch needs the AWS libraries, not installed: {NEEDS_AWS_EXTRA}"
                              ) from None

        client = boto3.client("cloudwatch")
    client.put_metric_data(Namespace=namespace(), MetricData=[
        {"MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in DIMENSIONS.items()],
         "Unit": UNITS[name], "Value": value}
        for name, value in values.items()])


def publisher_from_env(env: Mapping[str, str] | None = None) -> Publisher | None:
    """The CLI's publisher: PutMetricData when SYNC_METRICS is `cloudwatch` (the Fargate task
    definition sets it), none when it is unset or `none`; anything else is refused."""
    env = os.environ if env is None else env
    choice = (env.get("SYNC_METRICS") or "").strip().lower() or "none"
    if choice not in METRICS_OPTIONS:
        raise DbSyncError(f"SYNC_METRICS={choice!r} is not one of {', '.join(METRICS_OPTIONS)}")
    return publish_cloudwatch if choice == "cloudwatch" else None


@contextmanager
def recorded(publish: Publisher | None, *, tables, dry_run: bool,
             on_error: Callable[[Exception], None] | None = None) -> Iterator[Callable[[Mapping], None]]:
    """Around one sync: call the yielded function with its result. On leaving, the result's
    values are published; if the block raised, a refresh publishes `SyncSucceeded` = 0 and the
    exception goes on. A publisher that fails is reported to `on_error` and never replaces
    the sync's own outcome."""
    if publish is None:
        yield lambda _result: None
        return
    refresh = counts_as_refresh(tables, dry_run)
    results: list[Mapping] = []

    def emit(values: Values) -> None:
        try:
            publish(values)
        except Exception as exc:  # metrics must never change what the sync did
            if on_error is not None:
                on_error(exc)

    try:
        yield results.append
    except BaseException:
        if refresh:
            emit(failure_values())
        raise
    if results and not dry_run:
        emit(sync_values(results[-1], refresh=refresh))
