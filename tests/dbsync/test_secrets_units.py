"""url_from_secret_json: a libpq URL from an RDS secret's JSON (no database, no AWS)."""

from __future__ import annotations

import json

import psycopg2.extensions
import pytest

from dbsync.errors import DbSyncError
from dbsync.secrets import url_from_secret_json


def test_full_rds_secret():
    text = json.dumps({"engine": "postgres", "host": "prod.cluster.example", "port": 6543,
                       "username": "sync", "password": "pw", "dbname": "books"})
    assert url_from_secret_json(text) == "postgresql://sync:pw@prod.cluster.example:6543/books"


def test_the_secret_wins_over_the_settings_and_the_port_defaults_to_5432():
    text = json.dumps({"host": "from-secret", "username": "u", "password": "p", "dbname": "db1"})
    assert url_from_secret_json(text, host="from-setting", dbname="db2") == "postgresql://u:p@from-secret:5432/db1"
    # `database` is accepted where `dbname` is missing.
    text = json.dumps({"host": "h", "username": "u", "password": "p", "database": "db3"})
    assert url_from_secret_json(text).endswith("@h:5432/db3")


def test_username_password_only_takes_host_port_and_dbname_from_the_settings():
    text = json.dumps({"username": "master", "password": "pw"})
    assert url_from_secret_json(text, host="staging.example", port="5433", dbname="staging") == \
        "postgresql://master:pw@staging.example:5433/staging"


@pytest.mark.parametrize("given, missing", [
    ({}, "host or dbname"), ({"host": "h"}, "dbname"), ({"dbname": "d"}, "host"),
])
def test_username_password_only_without_the_settings_is_refused(given, missing):
    text = json.dumps({"username": "master", "password": "s3cr3t"})
    with pytest.raises(DbSyncError) as caught:
        url_from_secret_json(text, what="secret arn:x", **given)
    assert str(caught.value) == (f"secret arn:x has no {missing}, and no *_DB_HOST / *_DB_NAME setting"
                                 " supplies it")
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize("text, message", [
    ("not json", "is not JSON with username and password"),
    ("[1, 2]", "has no username/password"),
    ('"a string"', "has no username/password"),
    ('{"password": "pw", "host": "h", "dbname": "d"}', "has no username/password"),
    ('{"username": "", "password": "pw", "host": "h", "dbname": "d"}', "has no username/password"),
    ('{"username": "u", "host": "h", "dbname": "d"}', "has no username/password"),
])
def test_missing_credentials_are_refused_without_echoing_the_secret(text, message):
    with pytest.raises(DbSyncError) as caught:
        url_from_secret_json(text, what="secret arn:y")
    assert str(caught.value) == f"secret arn:y {message}"
    assert "pw" not in str(caught.value)


def test_special_characters_are_url_quoted_and_read_back_by_libpq():
    secret = {"username": "svc user@corp", "password": "p@ss:/w%rd?#&= é", "host": "db.example",
              "dbname": "books/2026"}
    url = url_from_secret_json(json.dumps(secret))
    assert url == ("postgresql://svc%20user%40corp:p%40ss%3A%2Fw%25rd%3F%23%26%3D%20%C3%A9@db.example:5432/"
                   "books%2F2026")
    params = psycopg2.extensions.parse_dsn(url)
    assert (params["user"], params["password"], params["host"], params["dbname"]) == (
        secret["username"], secret["password"], "db.example", secret["dbname"])


def test_an_empty_password_is_kept():
    assert url_from_secret_json('{"username": "u", "password": "", "host": "h", "dbname": "d"}') == \
        "postgresql://u:@h:5432/d"
