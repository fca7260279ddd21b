"""Fixtures of the API tests: apps built from settings, a migrated database, the API's log lines,
a faked Secrets Manager."""

from __future__ import annotations

import logging

import boto3
import pytest
from moto import mock_aws

from app.core.settings import Settings, get_settings
from app.main import create_app
from tests.support.api import LambdaClient, clear_api_env


@pytest.fixture
def make_api(monkeypatch):
    """Factory: create_app(Settings(**kw)) with the API's variables cleared first; the apps'
    connections are closed after the test."""
    clear_api_env(monkeypatch)
    apps = []

    def make(**settings):
        get_settings.cache_clear()
        app = create_app(Settings(**settings))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.db.close()
    get_settings.cache_clear()


@pytest.fixture
def api_db(make_db, connect_db):
    """A fresh database with the app's migrations applied; returns its DSN."""
    from app.migrate import apply_migrations

    dsn = make_db("api")
    apply_migrations(connect_db(dsn))
    return dsn


@pytest.fixture
def client(api_db, make_api) -> LambdaClient:
    """The books API on a migrated database, through the Mangum handler."""
    return LambdaClient(make_api(database_url=api_db))


@pytest.fixture
def capture_api_logs():
    """Factory: a list that receives the API's log lines at `level` and above, formatted exactly
    as Lambda prints them (powertools JSON)."""
    from app.core.log import logger

    std = logging.getLogger(logger.name)
    handlers: list[logging.Handler] = []

    def capture(level: int = logging.NOTSET) -> list[str]:
        lines: list[str] = []
        handler = logging.Handler(level)
        handler.setFormatter(logger.registered_formatter)
        handler.emit = lambda record: lines.append(handler.format(record))
        std.addHandler(handler)
        handlers.append(handler)
        return lines

    yield capture
    for handler in handlers:
        std.removeHandler(handler)


@pytest.fixture
def error_logs(capture_api_logs):
    return capture_api_logs(logging.ERROR)


@pytest.fixture
def aws(monkeypatch):
    """Secrets Manager, faked by moto."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("secretsmanager")


# admin-route:begin
@pytest.fixture
def admin_api(make_api, monkeypatch):
    """Factory: an app whose admin settings come from the environment, as in Lambda."""
    from app.api.v1.admin import AdminSettings, get_admin_settings
    from tests.support.admin_route import KEY

    def make(dsn: str, *, key: str | None = KEY, key_arn: str | None = None, stage: str | None = "staging",
             allow_prod: str | None = None, **settings):
        for name in AdminSettings.variables():
            monkeypatch.delenv(name, raising=False)
        for name, value in (("ADMIN_API_KEY", key), ("ADMIN_API_KEY_SECRET_ARN", key_arn), ("STAGE", stage),
                            ("ADMIN_ALLOW_PROD", allow_prod)):
            if value is not None:
                monkeypatch.setenv(name, value)
        get_admin_settings.cache_clear()
        return LambdaClient(make_api(database_url=dsn, **settings))

    yield make
    get_admin_settings.cache_clear()


@pytest.fixture
def audit_lines(capture_api_logs):
    """The JSON audit lines the route logs, formatted exactly as Lambda would print them."""
    return capture_api_logs()
# admin-route:end
