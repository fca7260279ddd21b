"""The summaries read ahead: a second session on each server summarises table after table while
the sync's own sessions are still comparing the tables before.

Comparing a table since the last sync needs one scan of it on each side (dbsync.sync.ranges), and
prod's was the longer: with one session, staging waited for it, then prod waited while staging
compared and fetched. Prod's second session imports the sync's snapshot (`pg_export_snapshot`,
then `SET TRANSACTION SNAPSHOT`, as pg_dump -j does), so what it reads is what the sync reads;
staging's reads tables the sync holds in EXCLUSIVE mode and has not yet written (staging_session).
Each runs at most two tables ahead (each summary waits in a spool, in memory up to 32 MB), and
ends with the comparison, whatever ends it: cancelled and closed on the way out of
`reading_ahead`. Where a second session cannot be had, each summary is read in its turn.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from dbsync.errors import DbSyncError
from dbsync.sessions import abandon, close, open_session
from dbsync.sync.budget import BudgetExceeded
from dbsync.sync.ranges import SPOOL_MEMORY, room_for

# Summaries read ahead of the one staging is comparing: each waits in a spool meanwhile.
AHEAD = 2


@dataclass
class Job:
    """One table's summary: the COPY of it, the table (locked first, NOWAIT), and how many ranges
    it has (for work_mem)."""

    copy_out: sql.Composable
    table: sql.Composable
    groups: int
    done: threading.Event = field(default_factory=threading.Event)
    spool: object = None
    failed: bool = False


# The sync's own session holds its locks already; a second session asking again would queue
# behind any stronger lock requested since (a migration's ALTER TABLE waiting for the sync), and
# the sync, waiting for its summary, would wait for that lock: a cycle the server cannot see.
# NOWAIT, as pg_dump -j does: such a table's summary is read by the sync's own session instead.
_LOCK = sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE NOWAIT")
# How long stop() keeps cancelling a statement still running before it leaves the thread be.
_STOP_SECONDS = 60


class Ahead:
    """The jobs by slot, worked through in order by a thread on the second session; at the first
    failure the thread stops, and the summaries it has not read are read in turn instead."""

    def __init__(self, session, jobs: dict[int, Job]):
        self.session, self.jobs = session, jobs
        self._room = threading.Semaphore(AHEAD)
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="dbsync-ahead", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        for job in self.jobs.values():
            self._room.acquire()
            if self._stopping:
                return
            job.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
            try:
                with room_for(job.groups, self.session, sort=False), self.session.cursor() as cur:
                    cur.execute(_LOCK.format(job.table))
                    cur.copy_expert(job.copy_out.as_string(self.session), job.spool)
            except BaseException:  # noqa: BLE001 - a speed-up, not a need: the sync reads it itself
                job.failed = True
            job.done.set()
            if job.failed:
                return

    def take(self, slot: int, stop_at: float | None):
        """The summary of `slot`, a spool at its start, once read (within the budget), which the
        caller closes; None when it was not read here (read it in turn)."""
        job = self.jobs[slot]
        while not job.done.wait(timeout=0.2):
            if stop_at is not None and time.perf_counter() >= stop_at:
                raise BudgetExceeded("the comparison ran out of its time budget")
            if not self._thread.is_alive() and not job.done.is_set():
                return None  # stopped at an earlier table's failure
        self._room.release()
        spool, job.spool = job.spool, None
        if job.failed:
            spool.close()
            return None
        spool.seek(0)
        return spool

    def stop(self, *, failed: bool) -> None:
        """Ends the thread, cancelling its statement until it does, then the session. A thread
        that will not end (a server that no longer answers) is left with its session and spool,
        never closed under it."""
        self._stopping = True
        self._room.release(AHEAD + len(self.jobs))
        give_up = time.perf_counter() + _STOP_SECONDS
        while self._thread.is_alive() and time.perf_counter() < give_up:
            self.session.cancel()  # idle between statements: nothing to cancel, and it ends soon
            self._thread.join(timeout=0.5)
        if self._thread.is_alive():
            return
        for job in self.jobs.values():
            if job.spool is not None:
                job.spool.close()
        if failed:
            abandon(self.session)  # rolled back first: a session in a failed statement may hang on close
        close(self.session)


@contextlib.contextmanager
def reading_ahead(opener, jobs: dict[int, Job]):
    """An Ahead working through `jobs` on the session `opener()` opens (prod_session or
    staging_session), or None when there is nothing to read ahead or no session to be had;
    stopped on leaving."""
    session = opener() if len(jobs) > 1 else None
    if session is None:
        yield None
        return
    ahead = Ahead(session, jobs)
    try:
        yield ahead
    except BaseException:
        ahead.stop(failed=True)
        raise
    ahead.stop(failed=False)


def prod_session(source, endpoint, options: str | None, lock_timeout: str):
    """A read-only session on prod in the sync's snapshot; None if one cannot be opened (too many
    connections, a server that cannot export its snapshot): the summaries are then read in turn."""
    session = None
    try:
        with source.cursor() as cur:
            # A standby exports its snapshot from PostgreSQL 10 on; before, the call would fail
            # the sync's own transaction.
            cur.execute("SELECT pg_is_in_recovery()")
            if cur.fetchone()[0] and source.info.server_version < 100000:
                return None
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
        session = open_session(endpoint, "source", options=options, lock_timeout=lock_timeout)
        session.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with session.cursor() as cur:
            cur.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        return session
    except (psycopg2.Error, OSError, DbSyncError):  # a second session is a speed-up, not a need
        abandon(session)
        close(session)
        return None


def staging_session(endpoint, lock_timeout: str):
    """A read-only session on staging, opened once the sync's session holds its tables in
    EXCLUSIVE mode and before it writes any row: no writer can change them until the sync ends,
    and the sync itself writes them only after the comparison, so this session reads what the
    sync's own would. None if one cannot be opened."""
    session = None
    try:
        session = open_session(endpoint, "target", lock_timeout=lock_timeout)
        session.set_session(isolation_level="REPEATABLE READ", readonly=True)
        return session
    except (psycopg2.Error, OSError, DbSyncError):
        abandon(session)
        close(session)
        return None
