"""Fixtures of the db_sync Lambda tests: Secrets Manager faked by moto, the handler's log lines."""

from __future__ import annotations

import io
import json

import pytest

from tests.support.env import SYNC_SETTINGS


@pytest.fixture
def aws(monkeypatch):
    """Secrets Manager faked by moto, powertools' secret cache empty, and none of the sync's
    variables from the outer environment."""
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    for var in SYNC_SETTINGS:
        monkeypatch.delenv(var, raising=False)
    parameters.clear_caches()
    with mock_aws():
        import boto3

        yield boto3.client("secretsmanager")
    parameters.clear_caches()


@pytest.fixture
def handler_logs():
    """Everything the handler logs (powertools writes JSON lines to its own stream)."""
    from lambdas.db_sync import handler

    buf = io.StringIO()
    old = handler.logger.registered_handler.setStream(buf)
    yield buf
    handler.logger.registered_handler.setStream(old)


@pytest.fixture
def emf(aws, handler_logs, capsys, monkeypatch, prod_and_staging):
    """The handler's EMF lines on stdout, as a function returning those printed so far (each as
    {metric: value}, with its namespace, dimensions and units); the databases from the environment."""
    for var in ("POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_METRICS_DISABLED", "POWERTOOLS_DEV",
                "POWERTOOLS_SERVICE_NAME", "SYNC_METRICS"):
        monkeypatch.delenv(var, raising=False)
    prod_dsn, staging_dsn = prod_and_staging
    monkeypatch.setenv("SOURCE_DATABASE_URL", prod_dsn)
    monkeypatch.setenv("TARGET_DATABASE_URL", staging_dsn)
    capsys.readouterr()

    def lines() -> list[dict]:
        out = []
        for line in capsys.readouterr().out.splitlines():
            doc = json.loads(line)
            (directive,) = doc["_aws"]["CloudWatchMetrics"]
            names = [m["Name"] for m in directive["Metrics"]]
            out.append({"namespace": directive["Namespace"], "dimensions": directive["Dimensions"],
                        "units": {m["Name"]: m["Unit"] for m in directive["Metrics"]},
                        # EMF takes a value or an array of them; powertools writes arrays
                        "values": {n: doc[n][0] if isinstance(doc[n], list) and len(doc[n]) == 1 else doc[n]
                                   for n in names},
                        **{d: doc[d] for dims in directive["Dimensions"] for d in dims}})
        return out

    return lines
