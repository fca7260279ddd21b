"""The sync's phases, in order, each a function of the run. `sync_databases` runs this list.

Source: one REPEATABLE READ READ ONLY transaction, so every table is read from one snapshot.
Target: one transaction from the first guard to the COMMIT; any failure before the COMMIT rolls
it back, sequences included (inside a transaction the engine moves them with ALTER SEQUENCE …
RESTART), so the target is exactly as it was.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
from psycopg2 import sql

from dbsync import align, safety

# The package, not its names: dbsync.verify imports modules of this package (cycle-safe this way).
from dbsync.catalog import read_catalog
from dbsync.catalog import sequences as seqcat
from dbsync.catalog.relations import relation_bytes, row_estimates
from dbsync.errors import DbSyncError, pg_message
from dbsync.masking import binding as masking
from dbsync.masking import immutable, subset
from dbsync.results import MaskingReport, TableCopied, TablePlanned
from dbsync.sequences import reset_sequences
from dbsync.sessions import open_session
from dbsync.sync import ahead, apply, budget, delta, drift, guards, ranges, record, setaside, staging_only, validate
from dbsync.sync.copy import CopyResult, stream_copy
from dbsync.sync.run import Phase, SyncRun
from dbsync.sync.units import plan_units

# Every transaction of a source session read-only from its first statement, not only the
# snapshot's: nothing a fragment could do after a COMMIT may write to prod.
READ_ONLY = "-c default_transaction_read_only=on"


def connect(run: SyncRun) -> None:
    """The target first, and only if it is allowed; then the source in its snapshot; never the
    same database twice; one sync per target at a time."""
    run.target = open_session(run.target_endpoint, "target", lock_timeout=run.options.lock_timeout)
    safety.check_target_allowed(run.target, run.options.allowlist)
    key = run.options.masking_key
    options = " ".join(filter(None, (READ_ONLY, key and key.startup_options())))
    run.source = open_session(run.source_endpoint, "source", options=options, lock_timeout=run.options.lock_timeout)
    # One snapshot for every table; READ ONLY makes the server itself refuse any write.
    run.source.set_session(isolation_level="REPEATABLE READ", readonly=True)
    safety.check_not_same_database(run.source, run.target)
    safety.take_sync_lock(run.target)


def read_catalogs(run: SyncRun) -> None:
    """Both at once, each on its own session: a schema of a thousand tables takes each a while."""
    with ThreadPoolExecutor(1, thread_name_prefix="dbsync-catalog") as pool:
        target = pool.submit(read_catalog, run.target)
        run.source_catalog = read_catalog(run.source)
        run.target_catalog = target.result()


def plan(run: SyncRun) -> None:
    """The units, under the drift policy (dbsync.sync.drift): what differs is reported, and the
    one warning line names what prod has that staging lacks."""
    rules = run.options.rules
    run.units, run.drift = plan_units(run.source_catalog, run.target_catalog, run.options.tables,
                                      binary=run.options.binary, policy=run.options.schema_drift,
                                      exclude=run.options.exclude + (rules.exclude if rules else []))
    run.report["schema_drift"] = run.drift.report()
    if warning := run.drift.warning():
        run.report.setdefault("warnings", []).append(warning)
    with run.source.cursor() as cur:
        run.source_bytes = relation_bytes(cur, [u.source.oid for u in run.units])


def mask(run: SyncRun) -> None:
    """The rules bound to the source's catalog: every problem refused before anything is read."""
    rules = run.options.rules
    copied = {u.source.key: u.columns for u in run.units}
    plan_ = masking.bind(rules, run.source_catalog, run.table_keys, copied)
    run.report["masking"] = MaskingReport(
        rules=rules.origin if rules else None,
        masked_columns=sorted(f"{m.table.label}.{c}" for m in plan_.tables.values() for c in m.expressions),
        empty_tables=sorted(m.table.label for m in plan_.tables.values() if not m.copy_rows),
        uncovered=[str(u) for u in plan_.uncovered])
    if rules is None:
        return
    masking.refuse_uncovered(plan_)
    if plan_.keyed and run.options.masking_key is None:
        raise DbSyncError(f"the {rules.origin} uses keyed strategies (email, name, phone, hash) but no masking key"
                          " is set: set SYNC_MASKING_KEY or SYNC_MASKING_KEY_SECRET_ARN; nothing was written")
    masking.verify_fragments(run.source, plan_)
    # On staging: prod's session is READ ONLY and cannot create the temporary table the check needs.
    immutable.refuse_mutable(run.target, plan_)
    # Staging's unique indexes, not only prod's: the index rebuild after the copy would find them.
    if duplicates := masking.duplicate_problems(plan_, run.target_catalog.keys, copied):
        raise DbSyncError(f"the {rules.origin} cannot be used, nothing was written: " + "; ".join(duplicates))
    subset.refuse_dangling(run.source, run.source_catalog, plan_, run.table_keys)
    for unit in run.units:
        unit.masked = plan_.tables.get(unit.source.key)


def _source_sequences(run: SyncRun):
    return sorted({f.sequence.key: f.sequence for f in run.source_catalog.feeds_of(run.table_keys)}.values(),
                  key=lambda s: s.key)


def check_guards(run: SyncRun) -> None:
    source_oids = [u.source.oid for u in run.units]
    target_oids = [u.target.oid for u in run.units]
    sequences = _source_sequences(run)
    existing = [run.target_catalog.sequences[s.key].oid for s in sequences if s.key in run.target_catalog.sequences]
    guards.check_no_outside_references(run.source, source_oids, run.target, target_oids,
                                       ignored=_drift_tables(run))
    guards.check_source_select(run.source, [(u.source.oid, c) for u in run.units for c in u.columns])
    guards.check_ownership(run.target, target_oids, existing)
    guards.check_row_security(run.source, source_oids, side="source")
    guards.check_row_security(run.target, target_oids, side="target")
    run.lock_share["target"] = guards.check_lock_budget(run.target, target_oids, side="target",
                                                        extra=len(sequences))
    run.lock_share["source"] = guards.check_lock_budget(run.source, source_oids, side="source")
    # Staging's own rows that the sync would leave referencing nothing: counted in the snapshot.
    run.staging_refs = staging_only.references(run.target_catalog, run.units, run.drift.unwritten)
    staging_only.check(run.link, run.staging_refs, delete_orphans=run.options.delete_orphans)


def _drift_tables(run: SyncRun) -> tuple[list[int], list[int]]:
    """(source, target) oids of the tables, partitions included, whose foreign keys into the synced
    set the drift policy handles: prod's own and excluded ones on the source, staging's own (under
    `tolerate`) and excluded ones on the target."""
    excluded = set(run.drift.excluded)
    source = {t.key for t in run.source_catalog.tables.values()
              if t.key not in run.target_catalog.tables or t.label in excluded}
    target = {t.key for t in run.target_catalog.tables.values() if t.label in excluded}
    if run.options.schema_drift == drift.TOLERATE:
        target |= run.drift.unwritten

    def oids(cat, keys) -> list[int]:
        return [t.oid for t in cat.tables.values() if t.key in keys or cat.partition_root.get(t.key) in keys]
    return oids(run.source_catalog, source), oids(run.target_catalog, target)


def source_positions(run: SyncRun) -> None:
    """The source's sequence positions, in its snapshot: where the target's sequences go."""
    sequences = _source_sequences(run)
    unreadable = [s.label for s in sequences if not s.can_read]
    if not unreadable:
        with run.source.cursor() as cur:
            run.positions = seqcat.read_positions(cur, sequences)
        unreadable = [label for label, value in run.positions.items() if value is None]
    if unreadable:
        raise DbSyncError(f"needs SELECT on sequence(s) {', '.join(unreadable[:5])} to read their positions")
    if run.options.dry_run:
        run.report["tables"] = [TablePlanned(table=u.label, columns=len(u.columns),
                                             format="binary" if u.binary else "text") for u in run.units]
        run.report["source_positions"] = dict(run.positions)
        run.report["estimate"] = budget.estimate(run.source_bytes, run.budget)


def incremental(run: SyncRun) -> None:
    """Per table with a primary key, the rows that differ, read from prod into temporary tables on
    staging; `deltas` applies them, the phases after it copy the rest in full (dbsync.sync.delta)."""
    if not run.options.incremental:
        return
    candidates = []
    for unit in run.units:
        keys = run.target_catalog.keys.get(unit.target.key)
        key = keys.primary if keys else ()
        if key and set(key) <= set(unit.columns):
            candidates.append((unit, key))
        else:
            unit.reason = "no primary key: rows cannot be matched"
    with run.target.cursor() as cur:
        # EXCLUSIVE: readers pass, writers wait, so nothing written after the comparison survives.
        for unit, _ in candidates:
            cur.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(unit.target.ident))
    run.set_aside.triggers += setaside.disable_user_triggers(run.target, [u.target.oid for u, _ in candidates])
    _largest_first(run, candidates)
    state = record.read_state(run.source, run.target)
    known = {i: last for i, (unit, _) in enumerate(candidates) if (last := state.get(unit.label)) is not None
             and last.fingerprint == record.fingerprint(run.source, unit, run.options.masking_key)}
    run.doing = "sampling prod's tables"
    looks = {i: delta.look(run.link, unit, key, known[i]) for i, (unit, key) in enumerate(candidates) if i in known}
    jobs, staged = _summary_jobs(run, looks)
    with ahead.reading_ahead(lambda: ahead.prod_session(run.source, run.source_endpoint, READ_ONLY,
                                                        run.options.lock_timeout), jobs) as prod_reader, \
            ahead.reading_ahead(lambda: ahead.staging_session(run.target_endpoint, run.options.lock_timeout),
                                staged if prod_reader else {}) as staging_reader:
        for i, (unit, key) in enumerate(candidates):
            run.doing = f"comparing {unit.label}"
            run.check_budget()
            if i in known:
                found = delta.diff_recent(run.link, unit, key, i, known[i], looks[i],
                                          _taker(run, prod_reader, i), _taker(run, staging_reader, i))
                unit.compared = _decide(unit, found, "since the last sync")
            else:
                unit.compared = _choose(run, unit, key, i)
            if unit.mode == "delta":
                run.doing = f"reading the changed rows of {unit.label}"
                delta.fetch_changed(run.link, unit, key, i, unit.compared)


def _largest_first(run: SyncRun, candidates: list) -> None:
    """The largest tables first (the planner's estimates): their summaries, read ahead, then
    overlap the smaller tables' comparison."""
    with run.source.cursor() as cur:
        rows = row_estimates(cur, [u.source.oid for u, _ in candidates])
    candidates.sort(key=lambda c: -rows.get(c[0].source.oid, 0))


def _summary_jobs(run: SyncRun, looks: dict) -> tuple[dict, dict]:
    """(prod's, staging's) summaries to read ahead (dbsync.sync.ahead), by slot: none where a
    second session's locks, about as many again, would not fit a server's lock table."""
    cut = {i: seen for i, seen in looks.items() if seen.prod is not None}
    if run.lock_share["source"] > 0.5:
        return {}, {}
    jobs = {i: ahead.Job(ranges.summary_copy(s.cut, s.prod), s.prod.table, s.cut.groups) for i, s in cut.items()}
    if run.lock_share["target"] > 0.5:
        return jobs, {}
    return jobs, {i: ahead.Job(ranges.summary_copy(s.cut, s.staging, "s"), s.staging.table, s.cut.groups)
                  for i, s in cut.items()}


def _taker(run: SyncRun, reader, i: int):
    """What gives slot `i`'s summary read ahead by `reader`, or None (read in its turn)."""
    if reader is None or i not in reader.jobs:
        return None
    return lambda: reader.take(i, run.link.copy_deadline())


def _choose(run: SyncRun, unit, key, i) -> delta.Delta | None:
    sampled = delta.sample_fraction(run.link, unit, key)
    if sampled is not None and sampled > delta.AUTO_FULL_FRACTION:
        unit.reason = f"about {sampled:.0%} of its rows differ (a sample): a full copy is cheaper"
        return None
    return _decide(unit, delta.diff(run.link, unit, key, i), "by digest")


def _decide(unit, found: delta.Delta, how: str) -> delta.Delta:
    found.how = how
    if found.fraction > delta.AUTO_FULL_FRACTION:
        about, sample = ("about ", " (a sample)") if found.sampled else ("", "")
        unit.reason = f"{about}{found.fraction:.0%} of its rows differ{sample}: a full copy is cheaper"
    elif found.changed > delta.MAX_DELTA_KEYS:
        unit.reason = f"{found.changed} rows differ, more than one delta fetches"
    else:
        unit.mode = "delta" if found.changed or found.gone else "unchanged"
    return found


def orphans(run: SyncRun) -> None:
    """Staging's own rows whose referenced rows go get their keys' ON DELETE action, before any
    parent row is deleted or truncated (dbsync.sync.staging_only); counted in `schema_drift`."""
    staging_only.apply(run.target, run.staging_refs, run.drift, delete_orphans=run.options.delete_orphans)


def apply_deltas(run: SyncRun) -> None:
    """What `incremental` found, applied in place: upserts parents first, then deletes children
    first, by the components of the foreign keys among the tables applied (apply.components).
    After `set_aside`, so the foreign keys between these tables and those copied in full are
    already set aside (and validated when re-added); the rest hold throughout. Not under a
    savepoint: rows a subtransaction writes carry its own, later xid, which the next sync would
    take for staging's own writes (dbsync.sync.record). A delta that breaks a constraint (a
    unique value moving between rows) fails the run instead, and sync_databases runs it again as a
    full sync."""
    kept = [u for u in run.units if u.compared is not None and u.mode != "full"]
    if not kept:
        return
    references = {k: v.references for k, v in run.target_catalog.keys.items()}
    groups = apply.components([u for u in kept if u.mode == "delta"], references)
    with apply.probing(run.target):
        for group in groups:
            _apply_group(run, group, "applying the changes to", _upsert_group, references)
        for group in reversed(groups):
            _apply_group(run, group, "deleting what prod no longer has from", _delete_group, references)
        _check_deferred(run)
        for unit in kept:
            found = unit.compared
            if unit.mode == "delta" and found.gone and found.deleted != found.gone:
                found.deleted = found.gone - apply.still_there(run.target, unit, found.key, found.slot)
            _report_delta(run, unit, found)


def _check_deferred(run: SyncRun) -> None:
    """Keys declared DEFERRABLE INITIALLY DEFERRED are checked now, not at COMMIT: their pending
    checks would make the later ALTER TABLEs (re-adding the foreign keys set aside) refuse ("has
    pending trigger events"), and a violation is the deltas' conflict, with its fallback."""
    run.doing = "checking the deferred foreign keys the changes touched"
    try:
        with run.target.cursor() as cur:
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    except psycopg2.IntegrityError as exc:
        table = ".".join(filter(None, (exc.diag.schema_name, exc.diag.table_name))) or "a table"
        raise delta.DeltaConflict(f"the changes to {table} broke a deferred constraint ({pg_message(exc)})",
                                  table=table, sqlstate=exc.pgcode, side="target") from None


def _apply_group(run: SyncRun, group: list, doing: str, step, references: dict) -> None:
    run.doing = f"{doing} {', '.join(u.label for u in group)}"
    try:
        step(run, [(u, u.compared.key, u.compared.slot) for u in group], apply.cyclic(group, references))
    except psycopg2.IntegrityError as exc:
        # The server's error names its table; in a cycle applied together that tells which one.
        named = (exc.diag.schema_name, exc.diag.table_name)
        table = next((u.label for u in group if u.target.key == named), ", ".join(u.label for u in group))
        raise delta.DeltaConflict(f"the changes to {table} broke a constraint ({pg_message(exc)})", table=table,
                                  sqlstate=exc.pgcode, side="target") from None


def _upsert_group(run: SyncRun, members: list, together: bool) -> None:
    inserted = apply.upsert_together(run.target, members) if together else [apply.upsert(run.target, *members[0])]
    for (unit, _, _), n in zip(members, inserted, strict=True):
        unit.compared.inserted = n


def _delete_group(run: SyncRun, members: list, together: bool) -> None:
    """The DELETEs; a table's own DELETE that removed every vanished key counts them deleted (one
    that removed fewer, after a cascade or a trigger, or deletes run together, are counted after)."""
    if together:
        apply.delete_together(run.target, members)
    else:
        unit = members[0][0]
        unit.compared.deleted = apply.delete_gone(run.target, *members[0])


def _report_delta(run: SyncRun, unit, found: delta.Delta) -> None:
    after = found.target_rows
    run.copied[unit.label] = CopyResult(found.source_rows, found.source_rows if after is None else after, 0,
                                        found.digest_seconds, "binary" if unit.binary else "text",
                                        counted=after is not None)
    row = TableCopied(
        table=unit.label, rows=found.source_rows, bytes=0, seconds=round(found.digest_seconds, 4),
        format="binary" if unit.binary else "text", mode=unit.mode,
        rows_copied=found.changed if unit.mode == "delta" else 0,
        rows_deleted=found.gone if unit.mode == "delta" else 0, digest_seconds=round(found.digest_seconds, 4),
        found=found.how)
    if found.ranges:
        row["key_ranges"], row["key_ranges_compared"] = found.ranges.count, found.ranges.differing
        if found.ranges.exact:
            row["key_ranges_exact"] = True
    run.report["tables"].append(row)


def truncate(run: SyncRun) -> None:
    if not run.full_units:
        return
    run.saved_columns = staging_only.save_columns(run.target, run.target_catalog, run.full_units, run.drift)
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(
            # ONLY for plain tables: inheritance children are units of their own (or not synced
            # at all); a partitioned table is truncated with its partitions.
            (u.target.ident if u.target.relkind == "p" else sql.SQL("ONLY {}").format(u.target.ident))
            for u in run.full_units)))


def set_aside(run: SyncRun) -> None:
    oids = [u.target.oid for u in run.full_units]
    kept = run.set_aside
    kept.triggers += setaside.disable_user_triggers(run.target, oids)
    kept.foreign_keys = setaside.drop_foreign_keys(run.target, oids)
    kept.indexes = setaside.drop_indexes(run.target, oids) if run.options.rebuild_indexes else {}
    run.report["set_aside"] = kept.counts()


def copy(run: SyncRun) -> None:
    """Each table streamed from the source's COPY into the target's, its indexes rebuilt after it."""
    count = len(run.full_units)
    estimates = _row_estimates(run)
    run.copy_started = time.perf_counter()
    for i, unit in enumerate(run.full_units, 1):
        run.doing = f"copying {unit.label}"
        run.check_budget()
        where = {"table": unit.label, "index": i, "count": count}
        run.notify({"event": "table_start", **where, "estimate": estimates.get(unit.source.oid)})
        if unit.copy_rows:
            result = stream_copy(run.source, run.target, unit.copy_out(), unit.copy_in(), binary=unit.binary,
                                 stop_at=run.budget.stop_at(run.reserve()), on_progress=_progress(run, where))
        else:  # the rules say `rows: none`: the table ends empty
            result = CopyResult(0, 0, 0, 0.0, "binary" if unit.binary else "text")
        run.copied[unit.label] = result
        run.doing = f"putting back staging's own columns of {unit.label}"
        staging_only.restore_columns(run.target, unit, run.saved_columns)
        run.doing = f"rebuilding the indexes of {unit.label}"
        run.check_budget()
        run.notify({"event": "table_indexes", **where})
        built = time.perf_counter()
        setaside.restore_indexes(run.target, run.set_aside.indexes.get(unit.target.oid, []))
        result.seconds += time.perf_counter() - built
        row = TableCopied(table=unit.label, rows=result.target_rows, bytes=result.bytes,
                          seconds=round(result.seconds, 4), format=result.format, mode="full")
        if unit.reason:
            row["reason"] = unit.reason
        run.report["tables"].append(row)
        run.notify({"event": "table_done", "index": i, "count": count, **row})
    run.copy_done = True


def _row_estimates(run: SyncRun) -> dict[int, int]:
    """The planner's estimates the progress shows a copy against (none without a listener)."""
    if run.options.progress is None or not run.full_units:
        return {}
    with run.source.cursor() as cur:
        return row_estimates(cur, [u.source.oid for u in run.full_units])


def _progress(run: SyncRun, where: dict):
    if run.options.progress is None:
        return None
    return lambda rows, nbytes: run.notify({"event": "table_progress", **where, "rows": rows, "bytes": nbytes})


def restore_constraints(run: SyncRun) -> None:
    setaside.restore_foreign_keys(run.target, run.set_aside.foreign_keys)


def restore_triggers(run: SyncRun) -> None:
    setaside.restore_triggers(run.target, run.set_aside.triggers)


def check_counts(run: SyncRun) -> None:
    run.report["validation"] = validation = validate.count_rows(run.target, run.units, run.copied)
    if not validation["ok"]:
        raise DbSyncError(validate.mismatch_message(validation))


def repair_sequences(run: SyncRun) -> None:
    """The source's sequences, defaults and identity on the target, then the engine positions
    every sequence of the synced tables from the source's positions, floored at the data. Prod
    decides who is fed: the engine creates no sequence and restores no default (align did what
    prod has; every schema change is in schema_changes)."""
    keys = run.table_keys
    run.report["schema_changes"] = align.align_sequences(run.target, run.source_catalog, run.target_catalog, keys,
                                                         run.positions)
    positions = align.target_positions(run.source_catalog, run.target, keys, run.positions)
    results = reset_sequences(run.target, tables=keys, exact=True, create_missing=False, restore_defaults=False,
                              positions=positions, in_transaction=True)
    run.report["sequences_reset"] = results
    errors = [r for r in results if r["action"] == "error"]
    if errors:
        raise DbSyncError("sequence repair failed, so nothing was committed: " + "; ".join(
            f"{r['table']}.{r['column']} ({r['sequence']}): {r['error']}" for r in errors[:5]))


def verify(run: SyncRun) -> None:
    """`sync --verify`: staging's synced tables against prod's rows as the rules mask them, in the
    sync's snapshot and transaction, under its locks (dbsync.verify); any difference fails the
    sync, rolled back. Every row is read, hence off by default."""
    if not run.options.verify:
        return
    from dbsync import verify as verification  # only a sync with --verify pays for importing it

    def before_each(unit) -> None:
        run.doing = f"verifying {unit.label}"
        run.check_budget()

    run.report["verify"] = result = verification.check_synced(run.link, run.units, run.target_catalog.keys,
                                                              before_each)
    problem = record.write_verified(run.target, **result)
    if problem:
        run.report.setdefault("warnings", []).append(problem)


def commit(run: SyncRun) -> None:
    run.report["schema_drift"] = run.drift.report()
    # What this sync saw, per table, for the next incremental one (dbsync.sync.record).
    problem = record.write_state(run.source, run.target, run.units, key=run.options.masking_key)
    if problem:
        run.report.setdefault("warnings", []).append(problem)
    run.target.commit()
    run.source.rollback()
    run.notify({"event": "done", "tables": len(run.units), "seconds": round(time.perf_counter() - run.started, 4)})


PHASES: tuple[Phase, ...] = (
    Phase("connect", "connecting and checking the target", connect),
    Phase("catalogs", "reading the catalogs", read_catalogs),
    Phase("plan", "planning the copy", plan),
    Phase("masking", "checking the masking rules", mask),
    Phase("guards", "checking what the sync needs", check_guards),
    Phase("positions", "reading the source's sequence positions", source_positions),
    # ---- writes start here; everything below is one target transaction ----
    Phase("incremental", "comparing the tables", incremental, writes=True),
    # Set aside before the TRUNCATE: a foreign key from a table the incremental sync kept would
    # otherwise refuse it. And before the deltas: a new row of theirs may reference a row that
    # only the full copy of its parent brings (the key is validated when re-added).
    Phase("set_aside", "setting aside triggers, foreign keys and indexes", set_aside, writes=True),
    # Before any parent row goes: staging's own rows get their keys' ON DELETE action.
    Phase("orphans", "handling staging's own rows whose referenced rows go", orphans, writes=True),
    Phase("deltas", "applying the changes", apply_deltas, writes=True),
    Phase("truncate", "truncating the target tables", truncate, writes=True),
    Phase("copy", "copying", copy, writes=True),
    Phase("constraints", "re-adding foreign keys", restore_constraints, writes=True),
    Phase("triggers", "re-enabling triggers", restore_triggers, writes=True),
    Phase("validate", "validating row counts", check_counts, writes=True),
    Phase("sequences", "repairing sequences", repair_sequences, writes=True),
    Phase("verify", "verifying staging against prod", verify, writes=True),
    Phase("commit", "committing", commit, writes=True),
)
