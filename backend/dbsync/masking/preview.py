"""`db-sync preview`: a few rows per table as they would arrive on staging, masked by prod's server
with the sync's own select list (dbsync.masking.binding.MaskedTable.select_item), in a READ ONLY
snapshot: nothing is written anywhere. The raw values come only when asked for (`raw`), from the
same query, so they are the same rows."""

from __future__ import annotations

from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import Catalog, Table, read_catalog
from dbsync.connect import DEFAULT_LOCK_TIMEOUT
from dbsync.errors import DbSyncError
from dbsync.masking import binding
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import Rules
from dbsync.sessions import abandon, close, open_session


def _chosen(catalog: Catalog, names: list[str] | None) -> list[Table]:
    top = [t for t in catalog.tables.values() if not t.is_partition]
    if not names:
        return sorted(top, key=lambda t: t.key)
    picked = []
    for name in names:
        found = [t for t in top if name in (t.label, f"{t.schema}.{t.name}", t.name)]
        if not found:
            raise DbSyncError(f"table {name!r} does not exist on the source (or is a partition: name its parent)")
        if len(found) > 1:
            raise DbSyncError(f"table {name!r} exists in several schemas: name it as schema.table")
        picked.append(found[0])
    return picked


def _query(table: Table, masked: binding.MaskedTable | None, columns: list[str], limit: int,
           raw: bool) -> sql.Composed:
    items = [masked.select_item(c) if masked else sql.Identifier(c) for c in columns]
    if raw:
        items += [sql.SQL("{} AS {}").format(sql.Identifier(c), sql.Identifier(f"raw {c}")) for c in columns]
    source = table.ident if table.relkind == "p" else sql.SQL("ONLY {}").format(table.ident)
    where = (sql.SQL(" WHERE ({})").format(sqltext.fragment(masked.where)) if masked and masked.where
             else sql.SQL(""))
    return sql.SQL("SELECT {} FROM {}{} LIMIT {}").format(sql.SQL(", ").join(items), source, where,
                                                          sql.Literal(limit))


def _table_preview(cur, table: Table, masked: binding.MaskedTable | None, limit: int, raw: bool) -> dict:
    columns = [name for name, col in table.columns.items() if not col.generated]
    entry = {"table": table.label, "columns": columns, "masked": sorted(masked.expressions) if masked else [],
             "rows": []}
    if masked and not masked.copy_rows:
        entry["note"] = "rows: none (the table arrives empty)"
        return entry
    cur.execute(_query(table, masked, columns, limit, raw))
    for row in cur.fetchall():
        entry["rows"].append(list(row[:len(columns)]))
        if raw:
            entry.setdefault("raw", []).append(list(row[len(columns):]))
    return entry


def preview(source, rules: Rules | None, key: MaskingKey | None, *, tables: list[str] | None = None,
            limit: int = 5, raw: bool = False, lock_timeout: str = DEFAULT_LOCK_TIMEOUT) -> list[dict]:
    """Per table {table, columns, masked, rows[, raw][, note]}: `limit` rows as the sync would
    copy them, read from `source` (prod) in one read-only snapshot."""
    options = " ".join(filter(None, ("-c default_transaction_read_only=on", key and key.startup_options())))
    conn = open_session(source, "source", options=options, lock_timeout=lock_timeout)
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        catalog = read_catalog(conn)
        chosen = _chosen(catalog, tables)
        plan = binding.bind(rules, catalog, {t.key for t in chosen})
        if plan.keyed and key is None:
            raise DbSyncError(f"the {rules.origin} uses keyed strategies (email, name, phone, hash) but no masking"
                              " key is set: set SYNC_MASKING_KEY or SYNC_MASKING_KEY_SECRET_ARN")
        binding.verify_fragments(conn, plan)
        with conn.cursor() as cur:
            return [_table_preview(cur, t, plan.tables.get(t.key), limit, raw) for t in chosen]
    finally:
        abandon(conn)
        close(conn)
