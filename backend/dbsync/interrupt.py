"""SIGINT and SIGTERM end a command at any moment with one line, rolled back, no session left.

A blocking libpq call does not return on a signal (libpq retries on EINTR, and psycopg2 refuses
a wait callback for COPY), so Python's handler alone would run only when the statement ends by
itself — an index rebuild or a long COPY later. While `handling_signals()` is in force, the C-level
handler also writes to a wake-up socket (signal.set_wakeup_fd) that a watchdog thread waits on;
it cancels the statement every open session of this process is running (`conn.cancel()`, which
is safe from another thread). The main thread then gets either `Signalled` from the handler or the
cancelled statement's error; the run's one place that explains failures (dbsync.sync.run) turns
either into `Interrupted` once `received()` says a signal came.

ECS stops a Fargate task with SIGTERM, then SIGKILL after the container's stopTimeout; the tool is
PID 1 there, which the kernel spares from a signal it has no handler for — this installs one.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import weakref
from collections.abc import Iterator

from dbsync.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_sessions: weakref.WeakSet = weakref.WeakSet()
_received: list[int] = []  # the first signal's number, once one came


class Signalled(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an error of the run
    """Raised in the main thread by the handler: a BaseException, so no `except Exception` on the
    way swallows it."""


def track(conn) -> None:
    """A session the watchdog cancels on a signal (dbsync.connect.connect registers each one)."""
    _sessions.add(conn)


def received() -> int | None:
    return _received[0] if _received else None


def interrupted(doing: str, *, what: str = "rolled back, staging unchanged", **kw) -> Interrupted:
    number = received() or signal.SIGINT
    return Interrupted(f"interrupted while {doing}: {what}", signal_number=int(number), **kw)


def _handle(signum, _frame) -> None:
    first = not _received
    if first:
        _received.append(signum)
        raise Signalled(signum)
    # A second signal while the first one's rollback runs: let the rollback finish.


def _cancel_all() -> None:
    for conn in list(_sessions):
        if not conn.closed:
            with contextlib.suppress(Exception):
                conn.cancel()


def _watch(reader: socket.socket) -> None:
    while True:
        try:
            data = reader.recv(16)
        except OSError:
            return
        if not data:
            return  # the writer end was closed: handling_signals() is over
        _cancel_all()


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM cancel every running statement and raise Signalled;
    the previous handlers and wake-up fd come back afterwards. Python lets only the main thread
    install handlers: called from another thread (a caller running `db-sync` in a worker), the
    block runs with the process's handlers as they are."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = {s: signal.signal(s, _handle) for s in SIGNALS}
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watchdog = threading.Thread(target=_watch, args=(reader,), name="dbsync-signal-watchdog", daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        writer.close()
        watchdog.join(timeout=1)
        reader.close()
