"""The API's settings: environment variables, RDS secrets (Secrets Manager faked by moto)."""

from __future__ import annotations

import json

import boto3
import psycopg2.extensions
import pytest
import test_api_lambda
from moto import mock_aws
from pydantic import ValidationError
from test_api_lambda import LambdaClient, clear_api_env

from app.core.settings import Settings, get_settings

make_api, api_db = test_api_lambda.make_api, test_api_lambda.api_db


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("secretsmanager")


def tcp_params(pg_server, dbname: str) -> dict:
    """host/port/user/password/dbname of a database over TCP (a secret cannot name a socket)."""
    return psycopg2.extensions.parse_dsn(pg_server.dsn(dbname, via="127.0.0.1"))


def test_settings_from_the_environment(monkeypatch):
    clear_api_env(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@db.example/books")
    monkeypatch.setenv("STAGE", " Staging ")
    monkeypatch.setenv("LOCK_TIMEOUT", "250ms")
    monkeypatch.setenv("DB_PORT", "6543")
    get_settings.cache_clear()
    try:
        s = get_settings()
        assert get_settings() is s  # cached for the container's life
        assert s.database_url.get_secret_value() == "postgresql://u:pw@db.example/books"
        assert "pw" not in repr(s)
        assert (s.stage, s.lock_timeout, s.db_port, s.is_production) == ("staging", "250ms", 6543, False)
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("stage, production", [
    (None, True), ("", True), ("prod", True), ("PROD", True), ("production", True),
    ("staging", False), ("dev", False),
])
def test_stage_fails_closed(monkeypatch, stage, production):
    clear_api_env(monkeypatch)
    if stage is not None:
        monkeypatch.setenv("STAGE", stage)
    assert Settings().is_production is production


@pytest.mark.parametrize("value", ["soon", "10 parsecs", "-1s"])
def test_bad_lock_timeout_is_refused(value):
    with pytest.raises(ValidationError, match="LOCK_TIMEOUT"):
        Settings(lock_timeout=value)


def test_full_rds_secret(aws, pg_server, make_db, make_api):
    dbname = psycopg2.extensions.parse_dsn(make_db("secret"))["dbname"]
    p = tcp_params(pg_server, dbname)
    arn = aws.create_secret(Name=f"rds/{dbname}", SecretString=json.dumps({
        "engine": "postgres", "host": p["host"], "port": int(p["port"]), "username": p["user"],
        "password": p.get("password", ""), "dbname": dbname}))["ARN"]
    client = LambdaClient(make_api(db_secret_arn=arn))
    assert client.get("/health").json() == {"status": "ok", "database": "ok"}


def test_username_password_secret_with_db_host_port_name(aws, pg_server, make_db, make_api):
    dbname = psycopg2.extensions.parse_dsn(make_db("secret"))["dbname"]
    p = tcp_params(pg_server, dbname)
    arn = aws.create_secret(Name=f"rds/master/{dbname}", SecretString=json.dumps({
        "username": p["user"], "password": p.get("password", "")}))["ARN"]
    client = LambdaClient(make_api(db_secret_arn=arn, db_host=p["host"], db_port=int(p["port"]), db_name=dbname))
    assert client.get("/health").status_code == 200
    # Without DB_HOST/DB_NAME the secret is not enough: a short 503, the cause in the log.
    r = LambdaClient(make_api(db_secret_arn=arn)).get("/health")
    assert r.status_code == 503 and r.json() == {"detail": "the database is unreachable or busy; try again"}


def test_database_url_wins_over_the_secret(aws, api_db, make_api):
    client = LambdaClient(make_api(database_url=api_db, db_secret_arn="arn:aws:secretsmanager:eu-west-1:"
                                                                       "123456789012:secret:not-there-AbCdEf"))
    assert client.get("/health").status_code == 200


def test_no_database_configured_is_a_short_503(make_api):
    r = LambdaClient(make_api()).get("/api/v1/books")
    assert r.status_code == 503 and r.json() == {"detail": "the database is unreachable or busy; try again"}
