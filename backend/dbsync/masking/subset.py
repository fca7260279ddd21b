"""Rows a `where:` (or `rows: none`) leaves pointing at rows it filtered out.

Subsetting does not follow foreign keys yet: a parent filtered by the rules keeps its children
whole, and re-adding the foreign key after the copy would fail. So before anything is read, each
foreign key of prod's catalog between two synced tables whose parent is filtered is counted with
one anti-join in the caller's transaction (the sync's snapshot, or check-rules' read of prod):
the child's rows that travel (its own `where:`), with every key column set (NULL references
nothing), whose parent row does not travel. Every such key is refused with its table and count.
"""

from __future__ import annotations

from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import Catalog, Table, TableKey
from dbsync.errors import DbSyncError, shown_name
from dbsync.masking.binding import MaskingPlan

_DANGLING = sql.SQL("SELECT count(*) FROM {child} c WHERE {child_where}{present}"
                    " AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match}{parent_where})")


def _from(table: Table) -> sql.Composable:
    return table.ident if table.relkind == "p" else sql.SQL("ONLY {}").format(table.ident)


def _filter(plan: MaskingPlan, key: TableKey) -> tuple[bool, str | None]:
    """(whether its rows travel, its where:) under the rules."""
    m = plan.tables.get(key)
    return (True, None) if m is None else (m.copy_rows, m.where)


def _count(cur, catalog: Catalog, plan: MaskingPlan, child: TableKey, ref) -> int:
    _, child_where = _filter(plan, child)
    parent_rows, parent_where = _filter(plan, ref.target)
    present = sql.SQL("").join(sql.SQL(" AND c.{} IS NOT NULL").format(sql.Identifier(c)) for c in ref.columns)
    match = sql.SQL(" AND ").join(sql.SQL("p.{} = c.{}").format(sql.Identifier(pc), sql.Identifier(c))
                                  for c, pc in zip(ref.columns, ref.target_columns, strict=True))
    if not parent_rows:
        match = sql.SQL("false")
    cur.execute(_DANGLING.format(
        child=_from(catalog.tables[child]),
        child_where=sql.SQL("({})").format(sqltext.fragment(child_where)) if child_where else sql.SQL("true"),
        present=present, parent=_from(catalog.tables[ref.target]), match=match,
        parent_where=sql.SQL(" AND ({})").format(sqltext.fragment(parent_where)) if parent_where else sql.SQL("")))
    return int(cur.fetchone()[0])


def dangling(conn, catalog: Catalog, plan: MaskingPlan, table_keys: set[TableKey]) -> list[str]:
    """`child (key → parent where …): N row(s)` for every foreign key whose filtered parent leaves
    travelling rows without their referenced row."""
    found = []
    with conn.cursor() as cur:
        for child in sorted(table_keys):
            keys = catalog.keys.get(child)
            if keys is None or not _filter(plan, child)[0]:
                continue
            for ref in keys.references:
                parent_rows, parent_where = _filter(plan, ref.target)
                if ref.target not in table_keys or (parent_rows and not parent_where):
                    continue
                n = _count(cur, catalog, plan, child, ref)
                if n:
                    how = "rows: none" if not parent_rows else f"where {parent_where!r}"
                    found.append(f"{catalog.tables[child].label} ({shown_name(ref.name)} →"
                                 f" {catalog.tables[ref.target].label} {how}): {n} row(s)")
    return found


def refuse_dangling(conn, catalog: Catalog, plan: MaskingPlan, table_keys: set[TableKey]) -> None:
    if plan.rules is None:
        return
    found = dangling(conn, catalog, plan, table_keys)
    if found:
        raise DbSyncError(f"the {plan.rules.origin} leaves rows referencing rows it filters out, so re-adding their"
                          " foreign keys would fail after the copy: " + "; ".join(found)
                          + " — filter the referencing tables the same way, or keep where: to tables nothing"
                          " references (docs/masking.md); nothing was written")
