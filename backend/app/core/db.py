"""The API's database connection: one per warm Lambda container, reopened when it breaks.

A Lambda container serves one request at a time, so one connection kept across invocations is
the right pool size; the lock only matters when the app runs under uvicorn with a thread pool,
where it keeps two requests from sharing a transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions
from starlette.requests import Request

from app.core.log import logger
from app.core.settings import Settings
from dbsync.config import is_auth_failure
from dbsync.connect import connect, describe_dsn
from dbsync.errors import DbSyncError, pg_message
from dbsync.secrets import database_url_from_secret

T = TypeVar("T")

APPLICATION_NAME = "book-api"

# Errors after which a connection may be dead rather than the statement wrong; only a connection
# that psycopg2 has marked closed is replaced (a lock timeout is an OperationalError too).
_CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError, DbSyncError)


class Database:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._conn = None
        self._lock = threading.Lock()

    def dsn(self, *, force_fetch: bool = False) -> str:
        """DATABASE_URL, or the URL built from DB_SECRET_ARN (+ DB_HOST/DB_PORT/DB_NAME); the
        settings refuse both at once."""
        s = self.settings
        if s.database_url is not None:
            return s.database_url.get_secret_value()
        if s.db_secret_arn:
            return database_url_from_secret(s.db_secret_arn, host=s.db_host, port=s.db_port,
                                            dbname=s.db_name, force_fetch=force_fetch)
        raise DbSyncError("no database configured: set DATABASE_URL or DB_SECRET_ARN")

    def _open(self):
        s = self.settings
        try:
            return connect(self.dsn(), role="API", lock_timeout=s.lock_timeout,
                           application_name=APPLICATION_NAME)
        except DbSyncError as exc:
            # Only a rejected password means the cached secret may be stale (a rotation); any
            # other failure would fail again, and an unreachable host would cost a second
            # connect timeout out of the Lambda's 29 s.
            if s.database_url is not None or not s.db_secret_arn or not is_auth_failure(str(exc)):
                raise
        # Fetch the secret afresh, once.
        return connect(self.dsn(force_fetch=True), role="API", lock_timeout=s.lock_timeout,
                       application_name=APPLICATION_NAME)

    def _connection(self):
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = self._open()
        elif conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            conn.rollback()
        return conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.close()

    def run(self, work: Callable[..., T]) -> T:
        """Run `work(conn)` on the cached connection, handed over idle (no open transaction),
        and commit what it leaves open. If the connection turns out to be dead (the server
        restarted, an idle timeout cut it), reconnect and run `work` once more: a dead connection
        committed nothing. A failed commit is not retried, since it may have gone through."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                try:
                    result = work(conn)
                except _CONNECTION_ERRORS as exc:
                    if not conn.closed:
                        self._rollback(conn)
                        raise
                    self._discard()
                    if attempt == 2:
                        raise
                    logger.warning("database connection lost; reconnecting",
                                   extra={"error": pg_message(exc)})
                    continue
                except BaseException:
                    self._rollback(conn)
                    raise
                try:
                    conn.commit()
                except psycopg2.Error:
                    if conn.closed:
                        self._discard()
                    else:
                        self._rollback(conn)
                    raise
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _rollback(self, conn) -> None:
        try:
            conn.rollback()
        except psycopg2.Error:
            self._discard()

    def describe(self) -> str:
        """Where the API's database is, without the password (for logs)."""
        s = self.settings
        if s.database_url is not None:
            return describe_dsn(s.database_url.get_secret_value())
        return f"secret {s.db_secret_arn}" if s.db_secret_arn else "(no database configured)"

    def close(self) -> None:
        with self._lock:
            self._discard()


def get_database(request: Request) -> Database:
    """The app's Database (a dependency; the app built by `create_app` owns it)."""
    return request.app.state.db
