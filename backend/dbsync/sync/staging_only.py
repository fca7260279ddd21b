"""What staging alone has, kept through a sync (the drift policy, dbsync.sync.drift).

Staging's own tables (and excluded ones) are written only as their own foreign keys into the
synced tables declare: a row whose referenced row is gone after the sync gets its key's ON DELETE
action, applied by the sync itself before any parent row goes (so it is counted, and an
incremental sync sets nothing aside), against prod's referenced values read in the sync's snapshot
into a temporary table on staging. Under NO ACTION or RESTRICT such rows refuse the sync before
it writes, unless it was told to delete them.

Staging's own columns keep their values: an incremental sync never writes them; a full copy saves
them by primary key before its TRUNCATE and puts them back right after the table's COPY, before
its indexes are rebuilt. New rows get the column's default.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import Catalog, Table
from dbsync.errors import DbSyncError, shown_name
from dbsync.sync.copy import stream_copy
from dbsync.sync.delta import only_from, temp_table
from dbsync.sync.drift import ON_DELETE, Drift
from dbsync.sync.link import Link
from dbsync.sync.units import Unit


@dataclass
class StagingReference:
    """A foreign key of a table the sync does not write into one it does."""

    table: Table  # the referencing table, on staging
    name: str
    columns: tuple[str, ...]
    parent: Unit
    parent_columns: tuple[str, ...]
    on_delete: str  # pg_constraint.confdeltype
    keys: sql.Identifier | None = None  # prod's referenced values, on staging
    orphans: int = 0  # rows whose referenced row prod does not have

    @property
    def label(self) -> str:
        return (f"{self.table.label} ({shown_name(self.name)} {ON_DELETE[self.on_delete]} →"
                f" {self.parent.label})")


def references(target: Catalog, units: list[Unit], unwritten: set) -> list[StagingReference]:
    by_key = {u.target.key: u for u in units}
    found = []
    for key in sorted(unwritten):
        keys = target.keys.get(key)
        for ref in keys.references if keys else ():
            # A key into the parent's own staging-only columns: their values stay with the rows that
            # survive, so only the parent's deleted rows could orphan it, as on staging before.
            if ref.target in by_key and set(ref.target_columns) <= set(by_key[ref.target].columns):
                found.append(StagingReference(target.tables[key], ref.name, ref.columns, by_key[ref.target],
                                              ref.target_columns, ref.on_delete))
    return found


def _dangling(ref: StagingReference, alias: str = "c") -> sql.Composable:
    """The referencing rows whose referenced values prod does not have (NULL keys reference nothing)."""
    present = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(alias, c)) for c in ref.columns)
    match = sql.SQL(" AND ").join(sql.SQL("p.{} = {}").format(sql.Identifier(pc), sql.Identifier(alias, c))
                                  for c, pc in zip(ref.columns, ref.parent_columns, strict=True))
    return sql.SQL("{} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(present, ref.keys, match)


def _parent_keys(link: Link, unit: Unit, columns: tuple[str, ...], slot: int) -> sql.Identifier:
    """Prod's values of `columns` of `unit` as the sync leaves them on staging (masked, only the
    `where:` rows, none under `rows: none`), read in the snapshot into a temporary table."""
    table = temp_table("parent_keys", slot)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    with link.target.cursor() as cur:
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            table, cols, only_from(unit.target)))
    if unit.copy_rows:
        m = unit.masked
        items = sql.SQL(", ").join(m.select_item(c) if m else sql.Identifier(c) for c in columns)
        where = sql.SQL(" WHERE ({})").format(sqltext.fragment(m.where)) if m and m.where else sql.SQL("")
        out = sql.SQL("COPY (SELECT DISTINCT {} FROM {}{}) TO STDOUT").format(items, only_from(unit.source), where)
        stream_copy(link.source, link.target, out, sql.SQL("COPY {} ({}) FROM STDIN").format(table, cols),
                    stop_at=link.copy_deadline())
    return table


def check(link: Link, refs: list[StagingReference], *, delete_orphans: bool) -> None:
    """Count each key's orphans; refuse, before anything is written, those whose key would
    refuse their parent's deletion (NO ACTION, RESTRICT) unless told to delete them."""
    read: dict = {}
    for ref in refs:
        wanted = (ref.parent.target.key, ref.parent_columns)
        if wanted not in read:
            read[wanted] = _parent_keys(link, ref.parent, ref.parent_columns, len(read))
        ref.keys = read[wanted]
        with link.target.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {} c WHERE {}").format(only_from(ref.table), _dangling(ref)))
            ref.orphans = int(cur.fetchone()[0])
    blocked = [r for r in refs if r.orphans and r.on_delete in ("a", "r")]
    if blocked and not delete_orphans:
        raise DbSyncError("staging's own rows reference rows prod does not have, under foreign keys that refuse"
                          " their deletion: " + "; ".join(f"{r.label}: {r.orphans} row(s)" for r in blocked)
                          + " — delete those rows on staging, or let the sync delete them with --delete-orphans"
                          " (SYNC_DELETE_ORPHANS=true); nothing was written")


_REMOVE_DANGLING = sql.SQL("DELETE FROM {t} c WHERE {dangling}")
_SET = sql.SQL("UPDATE {t} c SET {assign} WHERE {dangling}")


def apply(conn, refs: list[StagingReference], drift: Drift, *, delete_orphans: bool) -> None:
    """Each key's action on its orphans, before any parent row goes: what the server would do on
    the parent's DELETE, done and counted here (deleted, nulled, defaulted per table)."""
    with conn.cursor() as cur:
        for ref in refs:
            if not ref.orphans:
                continue
            t = only_from(ref.table)
            if ref.on_delete in ("n", "d"):
                value = sql.SQL("NULL" if ref.on_delete == "n" else "DEFAULT")
                assign = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), value) for c in ref.columns)
                cur.execute(_SET.format(t=t, assign=assign, dangling=_dangling(ref)))
                drift.count(ref.table.label, "nulled" if ref.on_delete == "n" else "defaulted", cur.rowcount)
            elif ref.on_delete == "c" or delete_orphans:
                cur.execute(_REMOVE_DANGLING.format(t=t, dangling=_dangling(ref)))
                drift.count(ref.table.label, "deleted", cur.rowcount)


# -- staging's own columns -------------------------------------------------------------------------

def kept_columns(unit: Unit) -> list[str]:
    """Staging's own columns whose values a full copy puts back (a generated one is computed, an
    identity GENERATED ALWAYS cannot be written)."""
    return [c for c in unit.staging_only
            if not unit.target.columns[c].generated and unit.target.columns[c].identity != "a"]


def primary_key(target: Catalog, unit: Unit) -> tuple[str, ...]:
    keys = target.keys.get(unit.target.key)
    key = keys.primary if keys else ()
    return key if key and set(key) <= set(unit.columns) else ()


def save_columns(conn, target: Catalog, units: list[Unit], drift: Drift) -> dict[str, tuple]:
    """Before the TRUNCATE: each full-copied table's own columns, by primary key, into a temporary
    table; label → (slot, key, columns). A table without one cannot match its rows: noted in `columns_reset`."""
    saved = {}
    with conn.cursor() as cur:
        for i, unit in enumerate(units):
            kept = kept_columns(unit)
            if not kept or not unit.copy_rows:
                continue
            key = primary_key(target, unit)
            if not key:
                drift.columns_reset += [f"{unit.label}.{shown_name(c)}" for c in kept]
                continue
            cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {}").format(
                temp_table("kept", i), sql.SQL(", ").join(sql.Identifier(c) for c in (*key, *kept)),
                only_from(unit.target)))
            saved[unit.label] = (i, key, kept)
    return saved


def restore_columns(conn, unit: Unit, saved: dict) -> None:
    """Right after the table's COPY, before its indexes are rebuilt: the saved values back on the
    rows whose key survived, only where they differ from what the COPY left (the default)."""
    if unit.label not in saved:
        return
    i, key, kept = saved[unit.label]
    match = sql.SQL(" AND ").join(sql.SQL("t.{k} = k.{k}").format(k=sql.Identifier(c)) for c in key)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("UPDATE {} t SET {} FROM {} k WHERE {} AND ({}) IS DISTINCT FROM ({})").format(
            only_from(unit.target),
            sql.SQL(", ").join(sql.SQL("{c} = k.{c}").format(c=sql.Identifier(c)) for c in kept),
            temp_table("kept", i), match,
            sql.SQL(", ").join(sql.Identifier("t", c) for c in kept),
            sql.SQL(", ").join(sql.Identifier("k", c) for c in kept)))
