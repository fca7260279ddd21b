"""Stream one table from the source's `COPY … TO STDOUT` into the target's `COPY … FROM STDIN`.

psycopg2 runs each COPY as one blocking call that pushes rows into a file's write() (out) or
pulls data from a file's read() (in). The source's COPY runs in a thread and writes into a
bounded queue of ~256 KB chunks; the target's COPY, in the caller's thread, reads from it. Both
calls release the GIL while they wait on the network, so the two servers work at the same time,
and memory stays at a few MB whatever the table's size.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from psycopg2 import sql

from dbsync.sync.budget import BudgetExceeded

CHUNK_BYTES = 256 * 1024
QUEUE_CHUNKS = 8  # memory bound: QUEUE_CHUNKS × CHUNK_BYTES in flight, plus one chunk each side
PROGRESS_EVERY = 0.25  # seconds between two progress reports of one copy

# (rows, bytes) the source has sent so far: called in the caller's thread, during the copy.
CopyProgress = Callable[[int, int], None]


class _ConsumerGone(Exception):
    """The target stopped reading (its COPY failed): the source side gives up."""


class _EOF:
    pass


class ChunkPipe:
    """File-like on both ends: write() for the source COPY, read() for the target COPY."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES, max_chunks: int = QUEUE_CHUNKS,
                 stop_at: float | None = None, on_progress: CopyProgress | None = None):
        self._queue: queue.Queue = queue.Queue(maxsize=max_chunks)
        self._parts: list[bytes] = []
        self._size = 0
        self._chunk_bytes = chunk_bytes
        self._closed = threading.Event()
        self._eof = False
        self.bytes = 0
        self.stop_at = stop_at  # time.perf_counter() past which the copy gives up (the time budget)
        self.out_of_time = False
        # libpq hands psycopg2 one row per CopyData message and psycopg2 makes one write() of
        # each, so counting writes counts rows at no cost (binary COPY's trailer adds one at the end).
        self.rows = 0
        self.sent = 0  # bytes written by the source so far: ahead of `bytes` by what is queued
        self._on_progress = on_progress
        self._reported = time.perf_counter()

    # producer side
    def write(self, data: bytes) -> None:
        self.rows += 1
        self.sent += len(data)
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self._chunk_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._parts:
            chunk = b"".join(self._parts)
            self._parts.clear()
            self._size = 0
            self._put(chunk)

    def _put(self, item) -> None:
        while True:
            if self._closed.is_set():
                raise _ConsumerGone()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        self._flush()
        self._put(_EOF)

    def fail(self, exc: BaseException) -> None:
        try:
            self._put(exc)
        except _ConsumerGone:
            pass

    # consumer side
    def read(self, size: int = -1) -> bytes:
        if self._eof:
            return b""
        if self.stop_at is not None and time.perf_counter() >= self.stop_at:
            self.out_of_time = True
            raise BudgetExceeded("the copy ran out of its time budget")
        item = self._next()
        if item is _EOF:
            self._eof = True
            return b""
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        self.bytes += len(item)
        return item

    def _next(self):
        """The next chunk; meanwhile, with a progress callback, report every PROGRESS_EVERY seconds
        even when no chunk comes (a slow source fills its first 256 KB slowly)."""
        if self._on_progress is None:
            return self._queue.get()
        while True:
            now = time.perf_counter()
            if now - self._reported >= PROGRESS_EVERY:
                self._reported = now
                self._on_progress(self.rows, self.sent)
            try:
                return self._queue.get(timeout=PROGRESS_EVERY)
            except queue.Empty:
                continue

    def close(self) -> None:
        """The consumer is done (or failed): unblock the producer."""
        self._closed.set()


class SourceCopyError(Exception):
    """The source side of a copy failed; carries the original error."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


@dataclass
class CopyResult:
    source_rows: int
    target_rows: int
    bytes: int
    seconds: float
    format: str
    # target_rows is the table's row count after the sync, known from the statements' row counts
    # under the sync's lock (an incremental sync), so validation need not count the table again.
    counted: bool = False


def copy_out_statement(table_ident: sql.Composable, select_list: sql.Composable, *, partitioned: bool,
                       binary: bool, query: bool = False, where: sql.Composable | None = None) -> sql.Composed:
    """The source's COPY of `select_list` (in the order the target's COPY names the columns).
    A query form (`COPY (SELECT …)`) for a partitioned table (its rows live in the partitions,
    which a SELECT on it reads), for masking expressions (`query`) and for a `where` subset."""
    fmt = sql.SQL(" WITH (FORMAT binary)") if binary else sql.SQL("")
    if not (partitioned or query or where is not None):
        return sql.SQL("COPY {} ({}) TO STDOUT{}").format(table_ident, select_list, fmt)
    # ONLY for a plain table: inheritance children are units of their own, as in COPY t TO.
    source = table_ident if partitioned else sql.SQL("ONLY {}").format(table_ident)
    condition = sql.SQL("") if where is None else sql.SQL(" WHERE ({})").format(where)
    return sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT{}").format(select_list, source, condition, fmt)


def copy_in_statement(table_ident: sql.Composable, columns: list[str], *, binary: bool,
                      freeze: bool) -> sql.Composed:
    options = []
    if binary:
        options.append(sql.SQL("FORMAT binary"))
    if freeze:
        # Legal because the sync truncated the table in this same transaction: rows are
        # written frozen, sparing staging the later anti-wraparound VACUUM of every page.
        options.append(sql.SQL("FREEZE"))
    opts = sql.SQL(" WITH ({})").format(sql.SQL(", ").join(options)) if options else sql.SQL("")
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(table_ident, cols, opts)


def stream_copy(source_conn, target_conn, copy_out: sql.Composed, copy_in: sql.Composed, *,
                binary: bool = False, stop_at: float | None = None,
                on_progress: CopyProgress | None = None) -> CopyResult:
    """Run both COPYs at once through a ChunkPipe. Raises SourceCopyError if the source side
    failed, BudgetExceeded if `stop_at` (a perf_counter() time) passed first, or the target's
    psycopg2 error if the target side failed; in every case the caller rolls back (the target
    transaction is aborted by then). `on_progress` hears the rows and bytes sent so far."""
    pipe = ChunkPipe(stop_at=stop_at, on_progress=on_progress)
    out_text = copy_out.as_string(source_conn)
    in_text = copy_in.as_string(target_conn)
    outcome: dict = {}
    src_cur = source_conn.cursor()
    tgt_cur = target_conn.cursor()

    def produce():
        try:
            src_cur.copy_expert(out_text, pipe, size=CHUNK_BYTES)
            outcome["rows"] = src_cur.rowcount
            pipe.finish()
        except _ConsumerGone:
            outcome["gone"] = True
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            outcome["error"] = exc
            pipe.fail(SourceCopyError(exc))

    started = time.perf_counter()
    thread = threading.Thread(target=produce, name="dbsync-copy-out", daemon=True)
    thread.start()
    try:
        tgt_cur.copy_expert(in_text, pipe, size=CHUNK_BYTES)
        target_rows = tgt_cur.rowcount
    except BaseException:
        pipe.close()
        thread.join(timeout=1)
        if thread.is_alive():
            source_conn.cancel()  # the source is still sending: stop its COPY rather than wait for it
            thread.join(timeout=30)
        if pipe.out_of_time:
            raise BudgetExceeded("the copy ran out of its time budget") from None
        if "error" in outcome:
            raise SourceCopyError(outcome["error"]) from None
        raise
    finally:
        pipe.close()
    thread.join()
    if "error" in outcome:  # the target finished but the source did not say so cleanly
        raise SourceCopyError(outcome["error"])
    return CopyResult(outcome.get("rows", -1), target_rows, pipe.bytes, time.perf_counter() - started,
                      "binary" if binary else "text")
