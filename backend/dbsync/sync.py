"""sync_databases(): a consistent, atomic copy of the source's tables into the target.

Source: one REPEATABLE READ READ ONLY transaction, so every table is read from one snapshot.
Target: one transaction — guards, TRUNCATE of every synced table in one statement, user
triggers, foreign keys and indexes of the set put aside, a streaming COPY per table with its
indexes rebuilt right after it, foreign keys re-added (each validated by one set-based query
instead of one lookup per row), triggers re-enabled, row counts
checked against the source's, sequences/defaults/identity made to match the source, the
engine's reset_sequences() positioning every sequence of an integer column from the source's
positions (the sync itself moving those that feed only other columns), COMMIT.
Both sessions run with pg_dump's settings (row_security off, UTF8, ISO dates, all float digits).
Any error before the COMMIT rolls everything back — sequences too, since inside a transaction
the engine moves them with ALTER SEQUENCE … RESTART — so the target is exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from dbsync import guards, schema, setaside
from dbsync.connect import connect, describe_dsn
from dbsync.copy import SourceCopyError, copy_in_statement, copy_out_statement, stream_copy
from dbsync.errors import DbSyncError, pg_message
from dbsync.sequences import read_positions, reset_sequences

__all__ = ["sync_databases", "reset_sequences"]

Progress = Callable[[dict], None]


@dataclass
class _Unit:
    """One table as the sync copies it."""

    source: schema.Table
    target: schema.Table
    columns: list[str]
    binary: bool

    @property
    def label(self) -> str:
        return self.source.label


def _open(endpoint, role: str):
    """A DSN string, or an object with .connect(role) (config.Endpoint: secrets, re-fetch)."""
    conn = connect(endpoint, role=role) if isinstance(endpoint, str) else endpoint.connect(role=role)
    try:
        _session_settings(conn, role)
    except BaseException:
        conn.close()
        raise
    return conn


# What pg_dump sets before it dumps: text COPY output that reads back exactly whatever the
# role's or database's defaults are (all float digits, ISO dates, unambiguous intervals), and
# row_security off so that a policy makes the server raise instead of silently filtering rows.
# The target gets the same, so it parses what the source writes and its counts see every row.
_SESSION_SETTINGS = (("row_security", "off"), ("extra_float_digits", "3"), ("DateStyle", "ISO"),
                     ("IntervalStyle", "postgres"))


def _session_settings(conn, role: str) -> None:
    try:
        # Both ends speak UTF8 (the server converts from and to each database's encoding), so
        # text, binary text fields included, crosses between databases of different encodings.
        conn.set_client_encoding("UTF8")
    except psycopg2.Error as exc:
        encoding = conn.get_parameter_status("server_encoding") or "?"
        raise DbSyncError(f"the {role} database's encoding {encoding} has no conversion to UTF8, which the sync"
                          f" uses between the two databases ({pg_message(exc)})") from None
    with conn.cursor() as cur:
        for name, value in _SESSION_SETTINGS:
            cur.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    conn.commit()


def _describe(endpoint) -> str:
    return describe_dsn(endpoint) if isinstance(endpoint, str) else endpoint.describe()


def sync_databases(source_dsn, target_dsn, *, tables: Iterable[str] | None = None, dry_run: bool = False,
                   progress: Progress | None = None, allowlist: str | None = None,
                   binary: bool = True, rebuild_indexes: bool = True) -> dict:
    """Copy the source's tables (all, or `tables`) into the target; return a JSON-serialisable report.

    `source_dsn` / `target_dsn`: libpq URLs or DSNs, or config.Endpoint objects. `allowlist`
    overrides SYNC_TARGET_ALLOWLIST. `binary` / `rebuild_indexes` exist to measure their effect.
    Raises DbSyncError (one line) on any refusal or failure;
    the target is then unchanged.
    """
    notify = progress or (lambda event: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    mark = started

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 4)
        mark = now

    target = _open(target_dsn, "target")
    source = None
    current = "the guards"
    try:
        guards.check_target_allowed(target, allowlist)
        source = _open(source_dsn, "source")
        # One snapshot for every table; READ ONLY makes the server itself refuse any write.
        source.set_session(isolation_level="REPEATABLE READ", readonly=True)
        guards.check_not_same_database(source, target)
        guards.take_sync_lock(target)

        current = "reading the catalogs"
        scat, tcat = schema.read_catalog(source), schema.read_catalog(target)
        units = _plan_units(scat, tcat, tables, binary=binary)
        keys = {u.source.key for u in units}
        target_oids = [u.target.oid for u in units]
        feeds = [f for f in scat.feeds if f.table in keys]
        source_seqs = sorted({f.sequence for f in feeds})
        existing_target_seqs = [tcat.sequences[k].oid for k in source_seqs if k in tcat.sequences]

        guards.check_no_outside_references(source, [u.source.oid for u in units], target, target_oids)
        guards.check_ownership(target, target_oids, existing_target_seqs)
        guards.check_row_security(source, [u.source.oid for u in units], side="source")
        guards.check_row_security(target, target_oids, side="target")
        guards.check_lock_budget(target, target_oids, side="target", extra=len(source_seqs))
        guards.check_lock_budget(source, [u.source.oid for u in units], side="source")
        # Inside the source's snapshot transaction (it is one already: in_transaction=True says so).
        source_next = read_positions(source, tables=keys, in_transaction=True)
        # The engine reads only sequences feeding integer columns; the rest (`'X' || nextval(…)`)
        # are read here, in the same snapshot.
        source_next.update(schema.read_next_values(
            source, [scat.sequences[k] for k in source_seqs if scat.sequences[k].label not in source_next]))
        for k in source_seqs:
            scat.sequences[k].next_value = source_next.get(scat.sequences[k].label)
        lap("guards")

        report = {
            "ok": True,
            "dry_run": dry_run,
            "source": _describe(source_dsn),
            "target": _describe(target_dsn),
            "tables": [],
            "validation": {"ok": True, "tables": []},
            "schema_changes": [],
            "sequences_reset": [],
            "timings": timings,
        }
        if dry_run:
            report["tables"] = [{"table": u.label, "columns": len(u.columns),
                                 "format": "binary" if u.binary else "text"} for u in units]
            report["source_positions"] = {scat.sequences[k].label: scat.sequences[k].next_value
                                          for k in source_seqs}
            target.rollback()
            timings["total"] = round(time.perf_counter() - started, 4)
            return report

        # ---- writes start here; everything below is one target transaction ----
        current = "truncating the target tables"
        with target.cursor() as cur:
            cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(
                # ONLY for plain tables: inheritance children are units of their own (or not
                # synced at all); a partitioned table is truncated with its partitions.
                (u.target.ident if u.target.relkind == "p" else sql.SQL("ONLY {}").format(u.target.ident))
                for u in units)))
        lap("truncate")
        current = "setting aside triggers and foreign keys"
        triggers = setaside.disable_user_triggers(target, target_oids)
        foreign_keys = setaside.drop_foreign_keys(target, target_oids)
        indexes = setaside.drop_indexes(target, target_oids) if rebuild_indexes else {}
        report["set_aside"] = {"triggers": len(triggers), "foreign_keys": len(foreign_keys),
                               "indexes": sum(len(v) for v in indexes.values())}
        lap("prepare")

        copied = {}
        for i, unit in enumerate(units, 1):
            current = f"copying {unit.label}"
            notify({"event": "table_start", "table": unit.label, "index": i, "count": len(units)})
            result = stream_copy(
                source, target,
                copy_out_statement(unit.source.ident, unit.columns, select=unit.source.relkind == "p",
                                   binary=unit.binary),
                copy_in_statement(unit.target.ident, unit.columns, binary=unit.binary,
                                  freeze=unit.target.relkind == "r"),
                binary=unit.binary)
            copied[unit.label] = result
            current = f"rebuilding the indexes of {unit.label}"
            built = time.perf_counter()
            setaside.restore_indexes(target, indexes.get(unit.target.oid, []))
            result.seconds += time.perf_counter() - built
            row = {"table": unit.label, "rows": result.target_rows, "bytes": result.bytes,
                   "seconds": round(result.seconds, 4), "format": result.format}
            report["tables"].append(row)
            notify({"event": "table_done", "index": i, "count": len(units), **row})
        lap("copy")

        current = "re-adding foreign keys"
        setaside.restore_foreign_keys(target, foreign_keys)
        setaside.restore_triggers(target, triggers)
        lap("constraints")

        current = "validating row counts"
        report["validation"] = _validate(target, units, copied)
        lap("validate")
        if not report["validation"]["ok"]:
            bad = [t for t in report["validation"]["tables"] if not t["ok"]]
            raise DbSyncError("row counts differ after the copy: " + "; ".join(
                f"{t['table']} source {t['source_rows']} target {t['target_rows']}" for t in bad))

        current = "repairing sequences"
        report["schema_changes"] = schema.align_sequences(target, scat, tcat, keys)
        pairs = schema.target_feeds(scat, target, keys)
        results = reset_sequences(target, tables=keys, exact=True, create_missing=False,
                                  positions=schema.target_positions(scat, pairs))
        # Sequences the engine does not position (they feed no integer column) mirror prod too.
        results += schema.restart_unpositioned(target, scat, pairs, {r.get("sequence") for r in results})
        report["sequences_reset"] = results
        errors = [r for r in results if r.get("action") == "error"]
        if errors:
            raise DbSyncError("sequence repair failed, so nothing was committed: " + "; ".join(
                f"{r.get('table')}.{r.get('column')} ({r.get('sequence')}): {r.get('error')}" for r in errors[:5]))
        lap("sequences")

        current = "committing"
        target.commit()
        lap("commit")
        source.rollback()
        timings["total"] = round(time.perf_counter() - started, 4)
        notify({"event": "done", "tables": len(units), "seconds": timings["total"]})
        return report
    except DbSyncError:
        _abandon(target, source)
        raise
    except SourceCopyError as exc:
        _abandon(target, source)
        raise DbSyncError(f"reading the source failed while {current}: {guards.row_security_hint(exc.original)};"
                          " the target was rolled back and is unchanged") from None
    except psycopg2.Error as exc:
        lost = target.closed != 0
        _abandon(target, source)
        explained = guards.check_lock_timeout_reached(exc, side=_failed_side(exc, source))
        if explained:
            raise DbSyncError(f"{explained} (while {current}); the target is unchanged") from None
        if current == "committing":
            raise DbSyncError(f"the COMMIT on the target failed: {pg_message(exc)}; check the target") from None
        if lost:
            raise DbSyncError(f"lost the connection to the target while {current}: {pg_message(exc)};"
                              " the server rolls back the open transaction, so the target is unchanged") from None
        raise DbSyncError(f"the sync failed while {current}: {guards.row_security_hint(exc)};"
                          " the target was rolled back and is unchanged") from None
    except BaseException:
        _abandon(target, source)
        raise
    finally:
        for conn in (target, source):
            if conn is not None and not conn.closed:
                conn.close()


def _abandon(target, source) -> None:
    for conn in (target, source):
        if conn is None or conn.closed:
            continue
        try:
            conn.rollback()
        except psycopg2.Error:
            conn.close()


def _failed_side(exc, source) -> str:
    """Which session raised a psycopg2 error: the source when it came from one of its cursors,
    else the target (its cursors, or its COMMIT)."""
    cur = getattr(exc, "cursor", None)
    return "source" if source is not None and cur is not None and cur.connection is source else "target"


def _resolve(cat: schema.Catalog, name: str) -> schema.Table:
    """`schema.table`, `table`, or the quoted form; a bare name must be unique across schemas."""
    exact = [t for t in cat.tables.values() if name in (t.label, f"{t.schema}.{t.name}")]
    if exact:
        return exact[0]
    bare = [t for t in cat.tables.values() if t.name == name]
    if len(bare) == 1:
        return bare[0]
    if bare:
        raise DbSyncError(f"table {name!r} exists in several schemas ({', '.join(t.label for t in bare)});"
                          " name it as schema.table")
    raise DbSyncError(f"table {name!r} does not exist on the source")


def _plan_units(scat: schema.Catalog, tcat: schema.Catalog, tables: Iterable[str] | None, *,
                binary: bool) -> list[_Unit]:
    if tables is None:
        chosen = [t for t in scat.tables.values() if not t.is_partition]
    else:
        picked = {}
        for name in tables:
            t = _resolve(scat, name)
            picked[t.key] = t
        # A partition named together with its partitioned table is already covered by it.
        chosen = [t for t in picked.values() if scat.partition_root.get(t.key) not in picked]
    if not chosen:
        raise DbSyncError("the source has no tables to sync")
    chosen.sort(key=lambda t: (t.schema, t.name))
    problems = []
    for t in chosen:
        problems += schema.schema_differences(t, tcat.tables.get(t.key))
    if problems:
        raise DbSyncError(f"the target's schema differs from the source's ({len(problems)} difference"
                          f"{'s' if len(problems) > 1 else ''}), nothing was written: " + "; ".join(problems))
    units = []
    for t in chosen:
        tgt = tcat.tables[t.key]
        cols = schema.copy_columns(t)
        units.append(_Unit(t, tgt, cols, binary and schema.binary_safe(t, tgt, cols)))
    return units


def _validate(conn, units: list[_Unit], copied: dict) -> dict:
    """Row counts: what the source's COPY sent (its snapshot) against what the target now holds."""
    tables = []
    with conn.cursor() as cur:
        for u in units:
            only = sql.SQL("") if u.target.relkind == "p" else sql.SQL("ONLY ")
            cur.execute(sql.SQL("SELECT count(*) FROM {}{}").format(only, u.target.ident))
            target_rows = cur.fetchone()[0]
            source_rows = copied[u.label].source_rows
            tables.append({"table": u.label, "source_rows": source_rows, "target_rows": target_rows,
                           "ok": source_rows == target_rows})
    return {"ok": all(t["ok"] for t in tables), "tables": tables}
