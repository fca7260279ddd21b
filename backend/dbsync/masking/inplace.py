"""`db-sync mask`: the same rules applied in place, in one transaction, to a database that already
holds prod's raw rows (a staging restored from a prod snapshot, an Aurora clone).

Each masked table is rewritten by one `ALTER TABLE … ALTER COLUMN c TYPE <its type> USING
<the sync's expression>` per table: the same expressions as the sync's COPY (the same key gives
exactly the values the sync would have written), evaluated on each raw row, into a new heap —
the old one, raw values and all, is unlinked at commit, so no dead tuple keeps them (an UPDATE
would leave every old row version behind until a VACUUM FULL). A `where:` deletes the other rows
and rewrites the table with CLUSTER; `rows: none` truncates. ALTER TABLE fires no trigger;
sequences and every other column are untouched.

ALTER COLUMN TYPE refuses a column a view uses, so the views and materialized views that read a
masked column (and every view built on them) are dropped first and recreated after, in the same
transaction, from their definitions (dbsync.masking.views); materialized views over any table the
rules change are refreshed, so no raw row survives in them. A database masked once keeps a record
(`dbsync.masked`), and a second `mask` is refused.
"""

from __future__ import annotations

from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import read_catalog
from dbsync.catalog.constraints import keys as read_keys
from dbsync.errors import DbSyncError
from dbsync.masking import binding as masking
from dbsync.masking import views
from dbsync.masking.binding import MaskedTable, MaskingPlan


def _rewrite(cur, masked: MaskedTable) -> str:
    table = masked.table
    if not masked.copy_rows:
        cur.execute(sql.SQL("TRUNCATE ONLY {}").format(table.ident) if table.relkind == "r"
                    else sql.SQL("TRUNCATE {}").format(table.ident))
        return "emptied"
    if masked.where:
        cur.execute(sql.SQL("DELETE FROM {} WHERE NOT coalesce(({}), false)").format(
            table.ident, sqltext.fragment(masked.where)))
    if masked.expressions:
        rewrites = [sql.SQL("ALTER COLUMN {} TYPE {} USING {}").format(
            sql.Identifier(c), sqltext.type_name(table.columns[c].type), e) for c, e in masked.expressions.items()]
        cur.execute(sql.SQL("ALTER TABLE {} {}").format(table.ident, sql.SQL(", ").join(rewrites)))
        return "masked"
    if masked.where:
        primary = read_keys(cur).get(table.key)
        if not primary or not primary.primary:
            raise DbSyncError(f"{table.label}: a where: rule in place needs a primary key to rewrite the table by")
        cur.execute(sql.SQL("CLUSTER {} USING {}").format(table.ident, sql.Identifier(_pkey_index(cur, table))))
        return "subset"
    return "unchanged"


def _pkey_index(cur, table) -> str:
    cur.execute("SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
                " WHERE x.indrelid = %s AND x.indisprimary", (table.oid,))
    return cur.fetchone()[0]


def plan_in_place(conn, rules) -> MaskingPlan:
    views.refuse_if_masked(conn)
    catalog = read_catalog(conn)
    keys = {t.key for t in catalog.tables.values() if not t.is_partition}
    plan = masking.bind(rules, catalog, keys)
    masking.refuse_uncovered(plan)
    masking.verify_fragments(conn, plan)
    return plan


def mask_in_place(conn, plan: MaskingPlan, *, dry_run: bool = False) -> list[dict]:
    """Rewrite every masked table in the connection's one transaction (the caller commits).
    Returns {table, action, columns} per table the rules touch."""
    out = []
    touched = sorted((m for m in plan.tables.values() if m.expressions or m.where or not m.copy_rows),
                     key=lambda m: m.table.key)
    with conn.cursor() as cur:
        affected = views.affected(cur, {m.table.oid: sorted(m.expressions) for m in touched})
        if not dry_run:
            views.drop(cur, affected)
        for masked in sorted(plan.tables.values(), key=lambda m: m.table.key):
            action = "planned" if dry_run else _rewrite(cur, masked)
            out.append({"table": masked.table.label, "action": action, "columns": sorted(masked.expressions),
                        "rows": "none" if not masked.copy_rows else ("where" if masked.where else "all")})
        for view in affected.views:
            out.append({"table": view.label, "action": "planned" if dry_run else view.action, "columns": [],
                        "rows": view.kind})
        if not dry_run:
            views.restore(cur, affected)
            views.record_masked(cur, plan.rules)
    return out
