"""The engine's connection, in one of two modes, and its lock-bounded, set-based reads.

Standalone, the engine commits in batches (so no transaction holds more locks than the lock
table allows) and positions sequences with setval(). Inside a caller's transaction (the sync),
it never commits, and savepoints isolate a failing statement.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from dbsync.catalog.privileges import lock_capacity
from dbsync.connect import DEFAULT_LOCK_TIMEOUT, lock_timeout_setting
from dbsync.errors import LOCK_NOT_AVAILABLE, DbSyncError, pg_message

# Statements per round trip when reading extremes or sequence states: large enough to make 10,000
# tables a handful of queries, small enough to plan quickly.
MAX_PER_QUERY = 1000


class StepError(str):
    """An engine step's failure: the message its column reports, and the SQLSTATE behind it that
    code branches on (a lock timeout is retried one by one, and callers may answer it with a retry)."""

    sqlstate: str | None

    def __new__(cls, message: str, sqlstate: str | None = None):
        made = super().__new__(cls, message)
        made.sqlstate = sqlstate
        return made
# Reads of at least this many tables are shared with a second connection (standalone only).
PARALLEL_MIN_ITEMS = 2000


class EngineSession:
    def __init__(self, conn, in_transaction: bool | None, lock_timeout: str | None = None):
        """`lock_timeout`: how long to wait for a busy table (checked as LOCK_TIMEOUT is); None keeps
        the connection's own, or DEFAULT_LOCK_TIMEOUT where it would wait forever."""
        self.conn = conn
        status = conn.info.transaction_status
        if status == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
            raise DbSyncError("the connection's transaction has already failed; roll it back first")
        if in_transaction is None:
            in_transaction = status != psycopg2.extensions.TRANSACTION_STATUS_IDLE
        self.in_transaction = in_transaction
        self._autocommit = conn.autocommit
        if not in_transaction:
            if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.commit()
            conn.autocommit = False
        self.cur = conn.cursor()
        self.cur.execute("SELECT current_setting('lock_timeout'), current_setting('row_security')")
        self._saved = dict(zip(("lock_timeout", "row_security"), self.cur.fetchone(), strict=True))
        # Row-level security would make max() see only some rows and the sequence land among the
        # rest; off, a query it would filter fails instead, and that column reports the error.
        self._set("row_security", "off")
        if lock_timeout is not None:
            self._set("lock_timeout", lock_timeout_setting(lock_timeout))
        elif self._saved["lock_timeout"] in ("0", "0ms"):
            self._set("lock_timeout", DEFAULT_LOCK_TIMEOUT)
        # After a batch times out, its items are retried one by one with at most a second's wait
        # each: one busy table must not cost LOCK_TIMEOUT twice (the API answers within 30 s).
        self.cur.execute("SELECT current_setting('lock_timeout'), (extract(epoch FROM least("
                         "current_setting('lock_timeout')::interval, interval '1s')) * 1000)::int")
        self.lock_timeout, self.retry_lock_timeout_ms = self.cur.fetchone()
        self.budget = max(64, lock_capacity(self.cur) // 4)
        # The second session of parallel reads, once they are done: it moves the sequences, whose
        # positions it read (a backend that has not opened a relation yet pays for it).
        self.partner: EngineSession | None = None
        self.end_batch()

    def sibling_parameters(self) -> dict:
        """How to open a sibling: read from this session's connection, in the thread using it."""
        params = dict(self.conn.info.dsn_parameters)
        if self.conn.info.password:
            params["password"] = self.conn.info.password
        return params

    def sibling(self, params: dict | None = None) -> EngineSession | None:
        """A second standalone session on the same database as the same role, for parallel
        reads; None when one cannot be opened (then the work simply stays on this one).
        `params`: sibling_parameters(), when another thread opens it."""
        params = params if params is not None else self.sibling_parameters()
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.Error:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, false)", (self.lock_timeout,))
            conn.commit()
            return EngineSession(conn, False)
        except (psycopg2.Error, DbSyncError):
            conn.close()
            return None

    def _set(self, name: str, value: str) -> None:
        """For the engine's work only: transaction-local inside the caller's transaction, else for
        the session until close() puts the caller's value back."""
        self.cur.execute("SELECT set_config(%s, %s, %s)", (name, value, self.in_transaction))

    def end_batch(self) -> None:
        """Release the locks taken so far (standalone only)."""
        if not self.in_transaction:
            self.conn.commit()

    def attempt(self, fn: Callable[[], object], *, short_lock_wait: bool = False) -> StepError | None:
        """Run fn; on a database error undo just fn (a savepoint: the batch's earlier work stays)
        and return the message."""
        self.cur.execute("SAVEPOINT dbsync_step")
        try:
            if short_lock_wait:
                self.cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(self.retry_lock_timeout_ms),))
            fn()
            if short_lock_wait:
                self.cur.execute("SELECT set_config('lock_timeout', %s, true)", (self.lock_timeout,))
        except psycopg2.Error as exc:
            self.cur.execute("ROLLBACK TO SAVEPOINT dbsync_step")
            return self.explain(exc)
        self.cur.execute("RELEASE SAVEPOINT dbsync_step")
        return None

    def explain(self, exc: psycopg2.Error) -> StepError:
        if exc.pgcode == LOCK_NOT_AVAILABLE:
            return StepError(f"lock timeout ({self.lock_timeout}): the table or sequence is busy (see LOCK_TIMEOUT)",
                             exc.pgcode)
        return StepError(pg_message(exc), exc.pgcode)

    def close(self) -> None:
        if self.partner is not None:
            self.partner.close()
            self.partner.conn.close()
            self.partner = None
        if not self.conn.closed and (self.conn.info.transaction_status
                                     != psycopg2.extensions.TRANSACTION_STATUS_INERROR):
            for name, value in self._saved.items():
                self._set(name, value)
            if not self.in_transaction:
                self.conn.commit()  # only reads can be pending here: ends the transaction, releases locks
                self.conn.autocommit = self._autocommit
        self.cur.close()


def chunks(items: list, cost: Callable[[object], int], budget: int) -> Iterator[list]:
    """Consecutive runs of items whose costs (locks) fit the budget, at most MAX_PER_QUERY each."""
    chunk: list = []
    used = 0
    for it in items:
        c = max(1, cost(it))
        if chunk and (used + c > budget or len(chunk) >= MAX_PER_QUERY):
            yield chunk
            chunk, used = [], 0
        chunk.append(it)
        used += c
    if chunk:
        yield chunk


def run_chunked(session: EngineSession, work: list, cost, query, merge, fail) -> None:
    """Set-based reads in lock-bounded chunks; a chunk that fails is retried one by one so the
    error lands on the item that caused it. `query(cur, chunk)` returns rows for
    `merge(chunk, rows)`; `fail(item, message)` records an item's error."""
    def run(chunk, into: list, short_lock_wait: bool = False):
        return session.attempt(lambda: into.extend(query(session.cur, chunk)), short_lock_wait=short_lock_wait)

    for chunk in chunks(work, cost, session.budget):
        rows: list = []
        chunk_error = run(chunk, rows)
        if chunk_error is None:
            merge(chunk, rows)
        else:
            for w in chunk:
                one: list = []
                err = run([w], one, short_lock_wait=chunk_error.sqlstate == LOCK_NOT_AVAILABLE)
                if err is None:
                    merge([w], one)
                else:
                    fail(w, err)
                session.end_batch()
        session.end_batch()


class Alongside:
    """A second session opened by a thread, and a first read made on it, while the caller's
    session reads on (the sequences' catalog while the columns' is read); run_parallel then uses
    that session for its second half, or closes it."""

    def __init__(self, session: EngineSession, read: Callable[[EngineSession], object]):
        self._out: dict = {}
        # The connection's parameters are read here: libpq wants one connection used by one thread.
        self._thread = threading.Thread(target=self._run, args=(session, session.sibling_parameters(), read),
                                        name="dbsync-sibling")
        self._thread.start()

    def _run(self, session: EngineSession, params: dict, read) -> None:
        try:
            other = self._out["session"] = session.sibling(params)
            if other is not None:
                self._out["value"] = read(other)
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            self._out["error"] = exc

    def result(self, default=None):
        """The read's value (`default` when no session could be opened); raises what it raised."""
        self._thread.join()
        if "error" in self._out:
            self.close()
            raise self._out["error"]
        return self._out.get("value", default)

    def take(self) -> EngineSession | None:
        """The session, handed over (its taker closes it)."""
        self._thread.join()
        return self._out.pop("session", None)

    def close(self) -> None:
        self._thread.join()
        other = self._out.pop("session", None)
        if other is not None:
            other.close()
            other.conn.close()


def _second_session(session: EngineSession, items: int, alongside: Alongside | None) -> EngineSession | None:
    """The session for the second half of `items` reads: the one opened alongside, or a new one;
    None when the reads stay on `session` (in a caller's transaction, or too few to split)."""
    if session.in_transaction or items < PARALLEL_MIN_ITEMS:
        if alongside is not None:
            alongside.close()
        return None
    return alongside.take() if alongside is not None else session.sibling()


def run_parallel(session: EngineSession, work: list, cost, query, merge, fail, *,
                 then: Callable[[EngineSession], None] | None = None, then_weight: float = 0,
                 alongside: Alongside | None = None) -> None:
    """run_chunked on two connections at once when there is enough work (standalone only: a
    caller's transaction is one connection). Each table's max() is the server opening the table
    and its index; a second backend does that on the other core. `then(session)`: more reads of
    the same run, made on the second connection after its share of `work` (they are worth
    `then_weight` items of it, so that both connections finish together), else on this one after
    `work`. `alongside`: a second session opened already (closed here if not used)."""
    other = _second_session(session, len(work), alongside)
    if other is None:
        run_chunked(session, work, cost, query, merge, fail)
        if then is not None:
            then(session)
        return
    lock = threading.Lock()

    def locked(fn):
        def call(*args):
            with lock:
                fn(*args)
        return call

    half = min(len(work), round((len(work) + then_weight) / 2))
    failure: list[BaseException] = []

    def second_half():
        try:
            run_chunked(other, work[half:], cost, query, locked(merge), locked(fail))
            if then is not None:
                then(other)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=second_half, name="dbsync-reads")
    worker.start()
    try:
        run_chunked(session, work[:half], cost, query, locked(merge), locked(fail))
    finally:
        worker.join()
        session.partner = other  # kept for the moves: it has read every sequence (session.close closes it)
    if failure:
        raise failure[0]
