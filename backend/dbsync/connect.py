"""Connections with clear one-line failures, a lock timeout, and DSNs that are safe to print."""

from __future__ import annotations

import re

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from dbsync import interrupt
from dbsync.errors import ConnectionFailed, DbSyncError, pg_message

DEFAULT_LOCK_TIMEOUT = "10s"
_TIMEOUT_RE = re.compile(r"^\s*\d+\s*(us|ms|s|min|h|d)?\s*$")


def lock_timeout_setting(value: str) -> str:
    """`value` checked as PostgreSQL's lock_timeout (`10s`, `500ms`, `2min`; `0` disables): the
    LOCK_TIMEOUT setting is checked with this (dbsync.settings), and so is what a caller passes."""
    value = value.strip()
    if not _TIMEOUT_RE.match(value):
        raise DbSyncError(f"LOCK_TIMEOUT={value!r} is not a duration such as 10s, 500ms or 2min")
    return value


def describe_dsn(dsn: str) -> str:
    """`user@host:port/dbname` for messages and logs: everything but the password."""
    try:
        p = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "(unparseable connection string)"
    host = p.get("host") or "local socket"
    if host.startswith("/"):
        host = f"socket {host}"
    port = f":{p['port']}" if p.get("port") else ""
    user = f"{p['user']}@" if p.get("user") else ""
    return f"{user}{host}{port}/{p.get('dbname') or p.get('user') or '(default)'}"


class Connection(psycopg2.extensions.connection):
    """A connection whose `dsn` and repr() leave out the startup options: the masking key travels
    there (dbsync.masking.key), and psycopg2 keeps them in `dsn`, which its repr() shows."""

    @property
    def dsn(self) -> str:
        params = psycopg2.extensions.parse_dsn(super().dsn)
        if "options" in params:
            params["options"] = "(hidden)"
        return psycopg2.extensions.make_dsn(**params)

    def __repr__(self) -> str:
        return f"<dbsync connection {describe_dsn(self.dsn)}, closed: {self.closed}>"


def connect(dsn: str, *, role: str = "database", lock_timeout: str = DEFAULT_LOCK_TIMEOUT,
            application_name: str = "db-sync", connect_timeout: int = 10, options: str | None = None,
            params: dict | None = None):
    """Open a connection or raise DbSyncError naming `role` (source/target/database) and where.
    `options`: more startup settings (libpq `options`), added to any the DSN has; `params`: more
    libpq connection parameters (keepalives)."""
    what = "database" if role == "database" else f"{role} database"
    if not dsn:
        raise DbSyncError(f"no {what} given: pass a connection URL or set its environment variable")
    where = describe_dsn(dsn)
    try:
        dsn_params = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        raise DbSyncError(f"the {what} connection string is not a valid PostgreSQL URL or DSN") from None
    extra = dict(params or {})
    if options:
        extra["options"] = " ".join(filter(None, (dsn_params.get("options"), options)))
    try:
        conn = psycopg2.connect(dsn, application_name=application_name, connect_timeout=connect_timeout,
                                connection_factory=Connection, **extra)
    except psycopg2.Error as exc:
        # libpq's text names host and user but never the password.
        raise ConnectionFailed(f"cannot connect to the {what} ({where}): {pg_message(exc)}",
                               side=role if role in ("source", "target") else None) from None
    interrupt.track(conn)
    timeout = lock_timeout_setting(lock_timeout)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(timeout)))
        conn.commit()
    except psycopg2.Error as exc:
        conn.close()
        raise DbSyncError(f"LOCK_TIMEOUT={timeout!r} was refused by the server: {pg_message(exc)}") from None
    return conn
