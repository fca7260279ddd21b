"""The state of one sync, how its phases run, and the one place an exception becomes the
one-line DbSyncError that names the phase it happened in."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from dbsync import interrupt
from dbsync.catalog import Catalog
from dbsync.connect import DEFAULT_LOCK_TIMEOUT
from dbsync.errors import LOCK_NOT_AVAILABLE, DbSyncError, LockNotAvailable, pg_message, sqlstate
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import Rules
from dbsync.results import SyncReport, Validation
from dbsync.sessions import abandon, close, describe
from dbsync.sync import guards
from dbsync.sync.budget import COMMIT_RESERVE, Budget, BudgetExceeded, Deadline, after_copy_reserve, exceeded_message
from dbsync.sync.copy import CopyResult, SourceCopyError
from dbsync.sync.drift import Drift
from dbsync.sync.link import Link
from dbsync.sync.setaside import SetAsideObjects
from dbsync.sync.units import Unit

Progress = Callable[[dict], None]


@dataclass
class SyncOptions:
    tables: list[str] | None = None
    dry_run: bool = False
    allowlist: str | None = None  # SYNC_TARGET_ALLOWLIST's value; None: only a local target
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT  # LOCK_TIMEOUT's value: how long to wait for a busy table
    binary: bool = True
    rebuild_indexes: bool = True
    progress: Progress | None = None
    rules: Rules | None = None  # masking rules; None: rows travel as they are (with a warning)
    masking_key: MaskingKey | None = None
    deadline: Deadline | None = None  # the time budget (dbsync.sync.budget); None: none
    incremental: bool = False  # write only what differs (dbsync.sync.delta)
    verify: bool = False  # compare every row with prod's, masked, before the COMMIT (dbsync.verify)
    schema_drift: str = "tolerate"  # SYNC_SCHEMA_DRIFT's value: the drift policy (dbsync.sync.drift)
    delete_orphans: bool = False  # staging's own rows left referencing nothing under NO ACTION: delete them
    exclude: list[str] = field(default_factory=list)  # globs on schema.table: treated as staging's own


@dataclass(frozen=True)
class Phase:
    name: str  # the key of its timing in the report
    doing: str  # what the run is doing meanwhile, for messages: "the sync failed while <doing>"
    run: Callable[[SyncRun], None]
    writes: bool = False  # a dry run stops before the first phase that writes


@dataclass(repr=False)  # its endpoints hold passwords, its options the masking key
class SyncRun:
    source_endpoint: object
    target_endpoint: object
    options: SyncOptions
    source: object = None  # connections
    target: object = None
    source_catalog: Catalog | None = None
    target_catalog: Catalog | None = None
    units: list[Unit] = field(default_factory=list)
    drift: Drift = field(default_factory=Drift)
    staging_refs: list = field(default_factory=list)  # dbsync.sync.staging_only.StagingReference
    saved_columns: dict = field(default_factory=dict)  # staging's own columns saved before the TRUNCATE
    positions: dict[str, int | None] = field(default_factory=dict)  # source sequence label → next value
    set_aside: SetAsideObjects = field(default_factory=SetAsideObjects)
    copied: dict[str, CopyResult] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    doing: str = "starting"
    phase: str | None = None  # the name of the phase running (dbsync.sync.phases)
    source_bytes: int = 0  # on-disk size of the tables to copy (for the estimate)
    # Of each side's lock table allowance, what the sync's transaction needs (dbsync.sync.guards).
    lock_share: dict[str, float] = field(default_factory=lambda: {"source": 1.0, "target": 1.0})
    copy_started: float | None = None
    copy_done: bool = False
    report: SyncReport = field(init=False)

    def __post_init__(self) -> None:
        self.started = time.perf_counter()
        self.budget = Budget(self.options.deadline)
        self.report = SyncReport(ok=True, dry_run=self.options.dry_run, source=describe(self.source_endpoint),
                                 target=describe(self.target_endpoint), tables=[],
                                 validation=Validation(ok=True, tables=[]), schema_changes=[], sequences_reset=[],
                                 timings=self.timings)

    @property
    def full_units(self) -> list[Unit]:
        return [u for u in self.units if u.mode == "full"]

    @property
    def table_keys(self) -> set[tuple[str, str]]:
        return {u.source.key for u in self.units}

    @property
    def link(self) -> Link:
        """What the incremental code may touch of this run (dbsync.sync.link)."""
        return Link(self.source, self.target, lambda: self.budget.stop_at(self.reserve()))

    def notify(self, event: dict) -> None:
        if self.options.progress:
            self.options.progress(event)

    def reserve(self) -> float:
        """What must be left of the budget for the phases still to come after this moment."""
        if self.copy_done:
            return COMMIT_RESERVE
        copied = 0.0 if self.copy_started is None else time.perf_counter() - self.copy_started
        return after_copy_reserve(copied)

    def check_budget(self) -> None:
        """Stop now if what is left of the budget cannot cover what still has to follow; and make
        every statement from here end before the budget does (statement_timeout)."""
        left = self.budget.left_after(self.reserve())
        if left is None or self.options.dry_run:  # a dry run only estimates against the budget
            return
        if left <= 0:
            raise BudgetExceeded("out of time")
        timeout = sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(int(left * 1000) + 1))
        for conn in (self.source, self.target):
            if conn is not None and not conn.closed:
                with conn.cursor() as cur:
                    cur.execute(timeout)

    def progress(self) -> str:
        done = sum(1 for u in self.units if u.label in self.copied)
        mb = sum(r.bytes for r in self.copied.values()) / 2**20
        return f"{done} of {len(self.units)} tables copied, {mb:.1f} MB"

    def __repr__(self) -> str:
        return f"<SyncRun {self.report['source']} -> {self.report['target']}, {self.phase or 'not started'}>"

    def step(self, phase: Phase) -> None:
        self.doing, self.phase = phase.doing, phase.name
        self.check_budget()
        self.notify({"event": "phase_start", "phase": phase.name, "doing": phase.doing})
        began = time.perf_counter()
        phase.run(self)
        self.timings[phase.name] = round(time.perf_counter() - began, 4)
        self.notify({"event": "phase_done", "phase": phase.name, "seconds": self.timings[phase.name]})

    def finish(self) -> SyncReport:
        self.timings["total"] = round(time.perf_counter() - self.started, 4)
        return self.report


def execute(run: SyncRun, phases: Iterable[Phase]) -> SyncReport:
    """Run the phases in order (a dry run stops before the first that writes); on any failure
    roll both sessions back and raise one line naming what the run was doing."""
    try:
        for phase in phases:
            if phase.writes and run.options.dry_run:
                break
            run.step(phase)
        if run.options.dry_run:
            abandon(run.target, run.source)
        return run.finish()
    except BaseException as exc:
        lost = run.target is not None and run.target.closed != 0
        abandon(run.target, run.source)
        explained = explain(run, exc, target_lost=lost)
        if explained is None:
            raise  # a bug, not the user's problem: the edges log its traceback
        raise explained from exc
    finally:
        close(run.target, run.source)


def explain(run: SyncRun, exc: BaseException, *, target_lost: bool) -> DbSyncError | None:
    """The one line for a failure, with its SQLSTATE, side and phase; None for a bug (an
    unexpected exception, or SQL of the project's own that the server could not parse)."""
    where = {"phase": run.phase}
    if interrupt.received() is not None:
        return interrupt.interrupted(run.doing, **where)
    if run.budget.seconds is not None and (isinstance(exc, BudgetExceeded) or _timed_out(run, exc)):
        return BudgetExceeded(exceeded_message(run.budget.seconds, run.doing, run.progress()), **where)
    if isinstance(exc, DbSyncError):
        exc.phase = exc.phase or run.phase
        return exc
    if isinstance(exc, SourceCopyError):
        return DbSyncError(f"reading the source failed while {run.doing}: {guards.row_security_hint(exc.original)};"
                           " the target was rolled back and is unchanged", sqlstate=sqlstate(exc.original),
                           side="source", **where)
    if not isinstance(exc, psycopg2.Error) or sqlstate(exc) in OWN_SQL_BUGS:
        return None
    side = _failed_side(exc, run.source)
    cause = {"sqlstate": sqlstate(exc), "side": side, **where}
    if sqlstate(exc) == LOCK_NOT_AVAILABLE:
        return LockNotAvailable(f"{guards.lock_timeout_message(exc, side=side)} (while {run.doing});"
                                " the target is unchanged", **cause)
    if run.phase == "commit":
        return DbSyncError(f"the COMMIT on the target failed: {pg_message(exc)}; check the target", **cause)
    if target_lost:
        return DbSyncError(f"lost the connection to the target while {run.doing}: {pg_message(exc)};"
                           " the server rolls back the open transaction, so the target is unchanged", **cause)
    return DbSyncError(f"the sync failed while {run.doing}: {guards.row_security_hint(exc)};"
                       " the target was rolled back and is unchanged", **cause)


# Errors the server raises only for a statement the project itself got wrong: every fragment of a
# rules file was parsed by the server before the run wrote anything (dbsync.masking.binding).
OWN_SQL_BUGS = frozenset({"42601", "42P02", "42P18"})  # syntax error, undefined parameter, indeterminate type


def _timed_out(run: SyncRun, exc: BaseException) -> bool:
    """A statement the budget's statement_timeout ended (or a COPY its pipe gave up on)."""
    if not isinstance(exc, psycopg2.errors.QueryCanceled | SourceCopyError):
        return False
    left = run.budget.remaining()
    return left is not None and left <= run.reserve() + 0.5


def _failed_side(exc, source) -> str:
    """Which session raised a psycopg2 error: the source when it came from one of its cursors,
    else the target (its cursors, or its COMMIT)."""
    cur = getattr(exc, "cursor", None)
    return "source" if source is not None and cur is not None and cur.connection is source else "target"
