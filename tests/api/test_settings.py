"""The API's settings: environment variables, RDS secrets (Secrets Manager faked by moto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psycopg2.extensions
import pytest
from psycopg2 import sql
from pydantic import ValidationError

from app.core.settings import Settings, get_settings
from dbsync.settings import SettingsError
from localdev.pgserver import admin_execute
from tests.support.api import LambdaClient, clear_api_env
from tests.support.http import free_port
from tests.support.paths import ROOT

# aws (Secrets Manager faked by moto), make_api and api_db are fixtures of tests/api/conftest.py.


def tcp_params(pg_server, dbname: str) -> dict:
    """host/port/user/password/dbname of a database over TCP (a secret cannot name a socket)."""
    return psycopg2.extensions.parse_dsn(pg_server.dsn(dbname, via="127.0.0.1"))


def test_settings_from_the_environment(monkeypatch):
    clear_api_env(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", " postgresql://u:pw@db.example/books\n")
    monkeypatch.setenv("DB_SECRET_ARN", "   ")  # blank counts as unset: not "both set"
    monkeypatch.setenv("LOCK_TIMEOUT", "250ms")
    monkeypatch.setenv("DB_PORT", "6543")
    get_settings.cache_clear()
    try:
        s = get_settings()
        assert get_settings() is s  # cached for the container's life
        assert s.database_url.get_secret_value() == "postgresql://u:pw@db.example/books"
        assert "pw" not in repr(s)
        assert (s.db_secret_arn, s.lock_timeout, s.db_port) == (None, "250ms", 6543)
    finally:
        get_settings.cache_clear()


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


def settings_error() -> pytest.ExceptionInfo[SettingsError]:
    """Load the settings from the environment afresh, expecting them to be refused."""
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    return caught


def test_database_url_and_the_secret_together_is_a_configuration_error(monkeypatch):
    clear_api_env(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", "postgresql://api:hunter2-pw@db.example/books")
    monkeypatch.setenv("DB_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds-AbCdEf")
    caught = settings_error()
    assert str(caught.value) == "both DATABASE_URL and DB_SECRET_ARN are set; set only one"


@pytest.mark.parametrize("env, message", [
    ({"DB_PORT": "abc"}, "DB_PORT: Input should be a valid integer, unable to parse string as an integer"),
    ({"LOCK_TIMEOUT": "soon"}, "LOCK_TIMEOUT='soon' is not a duration such as 10s, 500ms or 2min"),
    ({"DB_PORT": "5432x", "LOCK_TIMEOUT": "soon"},
     "DB_PORT: Input should be a valid integer, unable to parse string as an integer; "
     "LOCK_TIMEOUT='soon' is not a duration such as 10s, 500ms or 2min"),
])
def test_bad_setting_is_one_line_naming_the_variable(monkeypatch, env, message):
    clear_api_env(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", "postgresql://api:hunter2-pw@db.example/books")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caught = settings_error()
    assert str(caught.value) == message
    assert caught.value.__suppress_context__  # raised `from None`: no pydantic report chained on


@pytest.mark.parametrize("env, last_line", [
    ({"DB_PORT": "abc"}, "dbsync.environment.SettingsError: DB_PORT: Input should be a valid integer, "
                         "unable to parse string as an integer"),
    ({"DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds-AbCdEf"},
     "dbsync.environment.SettingsError: both DATABASE_URL and DB_SECRET_ARN are set; set only one"),
])
def test_bad_setting_at_import_of_the_lambda_module(env, last_line):
    """What Lambda's init (importing app.main) reports: one line naming the variable, no pydantic
    report echoing the values, so never DATABASE_URL's password."""
    base = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "backend"), os.environ.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-c", "import app.main"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**base, "DATABASE_URL": "postgresql://api:hunter2-pw@db.example/books",
                                         **env})
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == last_line
    assert "hunter2" not in r.stderr and "validation error" not in r.stderr and "input_value" not in r.stderr


def _counting_connects(monkeypatch) -> list[bool]:
    """Spy on the API's connection attempts (the real ones, to the real server): one entry per
    attempt, True when it was made with a freshly fetched secret. The attempts are made by
    dbsync.settings.DatabaseSettings.connect, which the sync's connections go through too."""
    import dbsync.settings as db_module

    attempts: list[bool] = []
    real_connect, real_from_secret = db_module.connect, db_module.database_url_from_secret
    fresh = {"value": False}

    def from_secret(*args, force_fetch=False, **kw):
        fresh["value"] = force_fetch
        return real_from_secret(*args, force_fetch=force_fetch, **kw)

    def connect(*args, **kw):
        attempts.append(fresh["value"])
        return real_connect(*args, **kw)

    monkeypatch.setattr(db_module, "database_url_from_secret", from_secret)
    monkeypatch.setattr(db_module, "connect", connect)
    return attempts


@pytest.mark.parametrize("where", ["unreachable port", "no such database"])
def test_secret_is_not_refetched_after_a_failure_other_than_authentication(aws, pg_server, make_api, monkeypatch,
                                                                           where):
    p = tcp_params(pg_server, "postgres")
    port = free_port() if where == "unreachable port" else int(p["port"])
    arn = aws.create_secret(Name="rds/elsewhere", SecretString=json.dumps({
        "host": p["host"], "port": port, "username": p["user"], "password": p.get("password", ""),
        "dbname": "no_such_database_here"}))["ARN"]
    attempts = _counting_connects(monkeypatch)
    r = LambdaClient(make_api(db_secret_arn=arn)).get("/health")
    assert r.status_code == 503
    assert attempts == [False]  # one attempt: a second would cost another connect timeout


def test_rotated_secret_is_refetched_once_after_an_authentication_failure(aws, pg_server, make_db, make_api,
                                                                          monkeypatch):
    dbname = psycopg2.extensions.parse_dsn(make_db("rotation"))["dbname"]
    p = tcp_params(pg_server, dbname)
    role = f"rotated_{uuid.uuid4().hex[:8]}"
    admin_execute(pg_server.dsn("postgres"),
                  sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'before-rotation'").format(sql.Identifier(role)))
    app = None
    try:
        secret = {"host": p["host"], "port": int(p["port"]), "username": role, "dbname": dbname}
        arn = aws.create_secret(Name=f"rds/{role}", SecretString=json.dumps(
            {**secret, "password": "before-rotation"}))["ARN"]
        app = make_api(db_secret_arn=arn)
        client = LambdaClient(app)
        assert client.get("/health").status_code == 200  # the secret is now cached
        # The rotation: a new password on the server and in the secret; the cached copy is stale.
        admin_execute(pg_server.dsn("postgres"), sql.SQL("ALTER ROLE {} PASSWORD 'after-rotation'")
                      .format(sql.Identifier(role)))
        aws.put_secret_value(SecretId=arn, SecretString=json.dumps({**secret, "password": "after-rotation"}))
        app.state.db.close()
        attempts = _counting_connects(monkeypatch)
        assert client.get("/health").status_code == 200
        assert attempts == [False, True]
    finally:
        if app is not None:
            app.state.db.close()
        admin_execute(pg_server.dsn("postgres"), sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_no_database_configured_is_a_short_503(make_api):
    r = LambdaClient(make_api()).get("/api/v1/books")
    assert r.status_code == 503 and r.json() == {"detail": "the database is unreachable or busy; try again"}
