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

from app.core.log import logger
from app.core.settings import Settings
from dbsync.errors import DbSyncError, pg_message

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

    def _open(self):
        # DATABASE_URL, or DB_SECRET_ARN's database, re-read once after an authentication failure
        # (a rotation): dbsync.settings.DatabaseSettings.connect, as the sync connects.
        return self.settings.connect(lock_timeout=self.settings.lock_timeout, application_name=APPLICATION_NAME)

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

    def close(self) -> None:
        with self._lock:
            self._discard()
