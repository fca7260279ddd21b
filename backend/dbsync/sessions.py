"""The sync's two sessions: opened from a URL or a DatabaseSettings, with pg_dump's output settings."""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from dbsync.connect import DEFAULT_LOCK_TIMEOUT, connect, describe_dsn
from dbsync.errors import DbSyncError, pg_message

# What pg_dump sets before it dumps: text COPY output that reads back exactly whatever the
# role's or database's defaults are (all float digits, ISO dates, unambiguous intervals), and
# row_security off so that a policy makes the server raise instead of silently filtering rows.
# The target gets the same, so it parses what the source writes and its counts see every row.
# TimeZone, bytea_output and standard_conforming_strings too: masked values are digests of
# value::text, which must be the same text on every server, and the rules' fragments are checked
# by a lexer that reads strings as standard-conforming ones.
SESSION_SETTINGS = (("row_security", "off"), ("extra_float_digits", "3"), ("DateStyle", "ISO"),
                    ("IntervalStyle", "postgres"), ("TimeZone", "UTC"), ("bytea_output", "hex"),
                    ("standard_conforming_strings", "on"))


# A runner that vanishes (a partition, a container killed with its host) must not leave either
# backend holding its locks or snapshot: both ends probe the connection, so a dead peer is seen
# within about half a minute whether the backend waits for data (COPY FROM STDIN: ClientRead,
# which no statement_timeout ends), sends it, or runs a long statement of its own
# (client_connection_check_interval). Over a Unix socket the TCP settings read as 0 and do
# nothing; there is no peer to lose. Measured bounds: docs/sync.md.
LIBPQ_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                    "tcp_user_timeout": 30000}
SERVER_KEEPALIVES = (("tcp_keepalives_idle", "10"), ("tcp_keepalives_interval", "5"), ("tcp_keepalives_count", "3"),
                     ("tcp_user_timeout", "30000"), ("client_connection_check_interval", "10s"))


def open_session(endpoint, role: str, options: str | None = None, lock_timeout: str = DEFAULT_LOCK_TIMEOUT):
    """A DSN string, or an object with .connect(role) (dbsync.settings.DatabaseSettings: secrets, re-fetch).
    `options`: startup settings (the masking key travels this way)."""
    kw = {"role": role, "options": options, "params": LIBPQ_KEEPALIVES, "lock_timeout": lock_timeout}
    conn = connect(endpoint, **kw) if isinstance(endpoint, str) else endpoint.connect(**kw)
    try:
        _pin_settings(conn, role)
    except BaseException:
        conn.close()
        raise
    return conn


def _pin_settings(conn, role: str) -> None:
    try:
        # Both ends speak UTF8 (the server converts from and to each database's encoding), so
        # text, binary text fields included, crosses between databases of different encodings.
        conn.set_client_encoding("UTF8")
    except psycopg2.Error as exc:
        encoding = conn.get_parameter_status("server_encoding") or "?"
        raise DbSyncError(f"the {role} database's encoding {encoding} has no conversion to UTF8, which the sync"
                          f" uses between the two databases ({pg_message(exc)})") from None
    with conn.cursor() as cur:
        for name, value in SESSION_SETTINGS + SERVER_KEEPALIVES:
            cur.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    conn.commit()


def describe(endpoint) -> str:
    """Where an endpoint points, never the password."""
    return describe_dsn(endpoint) if isinstance(endpoint, str) else endpoint.describe()


def abandon(*conns) -> None:
    """Roll back whatever is open; a connection that cannot even do that is closed."""
    for conn in conns:
        if conn is None or conn.closed:
            continue
        try:
            conn.rollback()
        except psycopg2.Error:
            conn.close()


def close(*conns) -> None:
    for conn in conns:
        if conn is not None and not conn.closed:
            conn.close()
