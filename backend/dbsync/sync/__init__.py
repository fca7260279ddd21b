"""sync_databases(): a consistent, atomic copy of the source's tables into the target.

The pipeline is in the file names: `guards` (what is checked before anything is written, beside
dbsync.safety, which keeps every write away from prod), `plan` (which tables, which columns, which
COPY format), `setaside` (triggers, foreign keys and indexes put aside for the load),
`copy` (one table streamed from COPY TO into COPY FROM), `validate` (row counts), then the
sequence repair (dbsync.align and the engine); `phases` lists them in order and `run` holds the
state of one run and turns any failure into one line.
"""

from __future__ import annotations

from collections.abc import Iterable

from dbsync.connect import DEFAULT_LOCK_TIMEOUT
from dbsync.errors import DbSyncError
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import Rules
from dbsync.results import SyncReport
from dbsync.sync.budget import Deadline
from dbsync.sync.delta import DeltaConflict
from dbsync.sync.drift import POLICIES
from dbsync.sync.phases import PHASES
from dbsync.sync.run import Progress, SyncOptions, SyncRun, execute

__all__ = ["sync_databases"]


def sync_databases(source_dsn, target_dsn, *, tables: Iterable[str] | None = None, dry_run: bool = False,
                   progress: Progress | None = None, allowlist: str | None = None,
                   binary: bool = True, rebuild_indexes: bool = True, rules: Rules | None = None,
                   masking_key: MaskingKey | None = None, max_seconds: float | None = None,
                   deadline: Deadline | None = None, incremental: bool = False,
                   lock_timeout: str = DEFAULT_LOCK_TIMEOUT, schema_drift: str = "tolerate",
                   delete_orphans: bool = False, exclude: Iterable[str] = (), verify: bool = False) -> SyncReport:
    """Copy the source's tables (all, or `tables`) into the target; return the report.

    `source_dsn` / `target_dsn`: libpq URLs or DSNs, or dbsync.settings.DatabaseSettings. `allowlist`:
    the allowed targets as SYNC_TARGET_ALLOWLIST writes them (None: only a local one). `lock_timeout`:
    how long to wait for a busy table, as LOCK_TIMEOUT writes it. The engine reads no setting itself:
    the CLI and the Lambda pass what the environment says. `binary` / `rebuild_indexes` exist to measure their effect.
    `rules` (dbsync.masking.rules.load_rules) mask personal data inside the source's COPY; keyed
    strategies need `masking_key` (dbsync.masking.key). `deadline`: the time budget — the sync
    stops itself before it, rolled back (dbsync.sync.budget); an entry point makes it once, where
    the command starts; `max_seconds` makes one here instead. `incremental`: write only the rows
    that differ, keeping staging readable (dbsync.sync.delta); the same end state. `verify`: before
    the COMMIT, compare every synced row with prod's as the rules mask it; a difference fails the
    sync (dbsync.verify).
    `schema_drift` (`tolerate` or `refuse`), `delete_orphans` and `exclude` (globs on schema.table,
    with the rules' `exclude:`): the drift policy, as SYNC_SCHEMA_DRIFT, SYNC_DELETE_ORPHANS and
    SYNC_EXCLUDE_TABLES write it (dbsync.sync.drift, docs/sync.md).
    Raises DbSyncError (one line) on any refusal or failure; the target is then unchanged.
    """
    if schema_drift not in POLICIES:
        raise DbSyncError(f"schema drift policy {schema_drift!r} is not one of {', '.join(POLICIES)}")
    if deadline is None and max_seconds is not None:
        deadline = Deadline.after(max_seconds)
    options = SyncOptions(tables=None if tables is None else list(tables), dry_run=dry_run, allowlist=allowlist,
                          binary=binary, rebuild_indexes=rebuild_indexes, progress=progress, rules=rules,
                          masking_key=masking_key, deadline=deadline, incremental=incremental,
                          lock_timeout=lock_timeout, schema_drift=schema_drift, delete_orphans=delete_orphans,
                          exclude=list(exclude), verify=verify)
    try:
        return execute(SyncRun(source_dsn, target_dsn, options), PHASES)
    except DeltaConflict as conflict:
        # Rolled back; the same sync again, every table copied in full, from a new snapshot, to
        # the same deadline: the fallback gets what is left of the budget, not a budget of its own.
        options.incremental = False
        report = execute(SyncRun(source_dsn, target_dsn, options), PHASES)
        report["fallback"] = f"{conflict}: synced again in full"
        return report
