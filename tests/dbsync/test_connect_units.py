"""describe_dsn (where a DSN points, never its password) and lock_timeout_setting (no database)."""

from __future__ import annotations

import pytest

from dbsync.connect import describe_dsn, lock_timeout_setting
from dbsync.errors import DbSyncError

PASSWORD = "hunter2-Pa55"


@pytest.mark.parametrize("dsn, described", [
    (f"postgresql://alice:{PASSWORD}@db.example:6543/books", "alice@db.example:6543/books"),
    (f"postgresql://alice:{PASSWORD}@db.example/books", "alice@db.example/books"),
    (f"host=/var/run/postgresql user=bob password={PASSWORD} dbname=staging",
     "bob@socket /var/run/postgresql/staging"),
    (f"postgresql://alice:{PASSWORD}@/books", "alice@local socket/books"),
    ("dbname=books", "local socket/books"),
    ("postgresql://carol@db.example", "carol@db.example/carol"),  # libpq's default: the user's name
    ("postgresql://db.example", "db.example/(default)"),
    (f"postgresql://alice:{PASSWORD}@db.example/books?sslmode=require&password={PASSWORD}",
     "alice@db.example/books"),
])
def test_describe_dsn(dsn, described):
    assert describe_dsn(dsn) == described
    assert PASSWORD not in describe_dsn(dsn)


@pytest.mark.parametrize("dsn", ["not a url at all ===", f"postgresql://u:{PASSWORD}@h:notaport:x/y?=="])
def test_describe_dsn_of_an_unparseable_string_says_so_without_echoing_it(dsn):
    assert describe_dsn(dsn) == "(unparseable connection string)"


@pytest.mark.parametrize("value, setting", [
    ("10s", "10s"), (" 500ms ", "500ms"), ("0", "0"), ("2min", "2min"), ("1 h", "1 h"), ("250", "250"),
    ("3d", "3d"), ("100us", "100us"),
])
def test_lock_timeout_setting_accepts_postgres_durations(value, setting):
    assert lock_timeout_setting(value) == setting


@pytest.mark.parametrize("value", ["soon", "10 parsecs", "-1s", "1.5s", "10s; DROP TABLE books", "", "s"])
def test_lock_timeout_setting_refuses_anything_else(value):
    with pytest.raises(DbSyncError, match=r"^LOCK_TIMEOUT=.* is not a duration such as 10s, 500ms or 2min$"):
        lock_timeout_setting(value)
