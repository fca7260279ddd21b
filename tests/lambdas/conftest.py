"""Fixtures of the db_sync Lambda tests: Secrets Manager faked by moto, the handler's log lines."""

from __future__ import annotations

import io

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
