"""The masking services behind `db-sync check-rules` and `db-sync mask`."""

from __future__ import annotations

import psycopg2

from dbsync import interrupt, safety
from dbsync.catalog import read_catalog
from dbsync.connect import DEFAULT_LOCK_TIMEOUT
from dbsync.errors import DbSyncError, pg_message, shown_name, sqlstate
from dbsync.masking import binding as masking
from dbsync.masking import immutable, subset
from dbsync.masking.inplace import mask_in_place, plan_in_place
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import Rules
from dbsync.sessions import abandon, close, open_session


def rules_report(conn, rules: Rules | None, target=None) -> dict:
    """{ok, columns: [{table, column, rule}], fragments: [{table, column, fragment, check}]}: each
    column's rule, `uncovered` (the gate would refuse the sync; `flagged_by` says which of the
    gate's patterns flagged it) or `as is`; each sql:/where:
    fragment (column None for a where:) `immutable`, or `unchecked` without a `target` session
    (staging, or a scratch database with the same schema; nothing is written there). A rules file
    that does not fit the database, or a fragment the target does not accept as IMMUTABLE, raises.
    Without rules (None), every column the gate flags is `uncovered`: what a rules file must cover."""
    catalog = read_catalog(conn)
    conn.rollback()
    keys = {t.key for t in catalog.tables.values() if not t.is_partition}
    plan = masking.bind(rules, catalog, keys)
    masking.verify_fragments(conn, plan)
    subset.refuse_dangling(conn, catalog, plan, keys)
    conn.rollback()
    if target is not None:
        immutable.refuse_mutable(target, plan)
        target.rollback()
    fragments = [{"table": f.table.label, "column": None if f.column is None else shown_name(f.column),
                  "fragment": f.text, "check": "unchecked" if target is None else "immutable"}
                 for f in immutable.fragments(plan)]
    uncovered = {(u.table, u.column): u.flagged_by for u in plan.uncovered}
    columns = []
    for key in sorted(keys):
        table = catalog.tables[key]
        rule = rules and (rules.tables.get(f"{table.schema}.{table.name}") or rules.tables.get(table.label))
        for name in table.columns:
            entry = {"table": table.label, "column": shown_name(name)}
            if (table.label, name) in uncovered:
                entry.update(rule="uncovered", flagged_by=uncovered[(table.label, name)])
            elif rule and not rule.copy_rows:
                entry["rule"] = "rows: none"
            elif rule and name in rule.columns:
                entry["rule"] = rule.columns[name].describe()
            else:
                entry["rule"] = "as is"
            columns.append(entry)
    unchecked = target is None and bool(fragments)
    return {"ok": not uncovered and not unchecked, "rules": rules and rules.origin, "columns": columns,
            "fragments": fragments}


def _refuse_if_source(conn, source) -> None:
    """`mask` rewrites what it is pointed at: never the configured source (prod). `source`: a DSN
    or an object with .connect(role, …) (dbsync.settings.DatabaseSettings); None when none is set."""
    if source is None:
        return
    source = open_session(source, "source", options="-c default_transaction_read_only=on")
    try:
        if safety.same_database(safety.server_identity(source), safety.server_identity(conn)):
            raise DbSyncError("refusing to mask the configured source database (SOURCE_*): db-sync mask rewrites"
                              " the database it is given, which must be a copy")
    finally:
        source.close()


def mask_database(dsn: str, rules: Rules, key: MaskingKey | None, *, dry_run: bool = False,
                  allowlist: str | None = None, source=None, lock_timeout: str = DEFAULT_LOCK_TIMEOUT) -> dict:
    """Mask the database at `dsn` in place, in one transaction; the target's guards apply
    (`allowlist`: SYNC_TARGET_ALLOWLIST's value; `source`: the configured prod, never masked)."""
    conn = open_session(dsn, "target", options=key.startup_options() if key else None, lock_timeout=lock_timeout)
    try:
        safety.check_target_allowed(conn, allowlist)
        _refuse_if_source(conn, source)
        safety.take_sync_lock(conn)
        plan = plan_in_place(conn, rules)
        immutable.refuse_mutable(conn, plan, side="database")
        if plan.keyed and key is None:
            raise DbSyncError(f"the {rules.origin} uses keyed strategies (email, name, phone, hash) but no masking"
                              " key is set: set SYNC_MASKING_KEY or SYNC_MASKING_KEY_SECRET_ARN; nothing was changed")
        tables = mask_in_place(conn, plan, dry_run=dry_run)
    except psycopg2.Error as exc:
        abandon(conn)
        close(conn)
        if interrupt.received() is not None:
            raise interrupt.interrupted("masking", what="rolled back, nothing was changed") from exc
        raise DbSyncError(f"masking failed: {pg_message(exc)}; nothing was changed", sqlstate=sqlstate(exc)) from exc
    except BaseException:
        abandon(conn)
        close(conn)
        raise
    try:
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    except psycopg2.Error as exc:
        # The COMMIT's outcome is unknown to the client (the connection may have dropped after
        # the server committed): say so rather than "nothing was changed".
        raise DbSyncError(f"the COMMIT of the masking failed: {pg_message(exc)}; check the database before"
                          " running mask again", sqlstate=sqlstate(exc)) from exc
    finally:
        close(conn)
    return {"dry_run": dry_run, "rules": rules.origin, "tables": tables}
