"""Which tables the sync copies and how: each source table paired with its target table, the
columns that travel, and whether binary COPY is safe; schema drift as the policy says
(dbsync.sync.drift)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import Catalog, Table
from dbsync.compare import binary_safe, copy_columns
from dbsync.errors import DbSyncError
from dbsync.masking.binding import MaskedTable
from dbsync.sync import drift as drifts
from dbsync.sync.copy import copy_in_statement, copy_out_statement

if TYPE_CHECKING:
    from dbsync.sync.delta import Delta


@dataclass
class Unit:
    """One table as the sync copies it."""

    source: Table
    target: Table
    columns: list[str]
    binary: bool
    masked: MaskedTable | None = None  # the rules that apply to it, if any
    mode: str = "full"  # full (TRUNCATE + COPY) | delta | unchanged (an incremental sync)
    reason: str | None = None  # why an incremental sync copies it in full
    compared: Delta | None = None  # what an incremental sync's comparison found, for its apply
    staging_only: list[str] = field(default_factory=list)  # staging's own columns, whose values are kept

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def copy_rows(self) -> bool:
        return self.masked is None or self.masked.copy_rows

    def copy_out(self) -> sql.Composed:
        """The source's COPY: each column as it is, or as its masking expression, evaluated by
        the source server inside the snapshot; only the `where:` rows, if the rules say so."""
        m = self.masked
        items = [m.select_item(c) if m else sql.Identifier(c) for c in self.columns]
        return copy_out_statement(self.source.ident, sql.SQL(", ").join(items),
                                  partitioned=self.source.relkind == "p", binary=self.binary,
                                  query=bool(m and m.expressions),
                                  where=sqltext.fragment(m.where) if m and m.where else None)

    def copy_in(self) -> sql.Composed:
        # FREEZE: legal because the sync truncated the table in this same transaction.
        return copy_in_statement(self.target.ident, self.columns, binary=self.binary,
                                 freeze=self.target.relkind == "r")


def resolve(cat: Catalog, name: str) -> Table:
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


def choose_tables(source: Catalog, tables: Iterable[str] | None) -> list[Table]:
    """Every top-level table, or those named; a partition named with its parent is covered by it."""
    if tables is None:
        chosen = [t for t in source.tables.values() if not t.is_partition]
    else:
        picked = {}
        for name in tables:
            t = resolve(source, name)
            picked[t.key] = t
        chosen = [t for t in picked.values() if source.partition_root.get(t.key) not in picked]
    if not chosen:
        raise DbSyncError("the source has no tables to sync")
    return sorted(chosen, key=lambda t: (t.schema, t.name))


def plan_units(source: Catalog, target: Catalog, tables: Iterable[str] | None, *, binary: bool,
               policy: str = drifts.TOLERATE, exclude: Iterable[str] = ()) -> tuple[list[Unit], drifts.Drift]:
    """The units, and the drift between the two schemas; DbSyncError listing every problem."""
    exclude = list(exclude)
    drift = drifts.Drift(policy=policy)
    chosen = []
    for t in choose_tables(source, tables):
        if drifts.is_excluded(t, exclude):
            drift.excluded.append(t.label)
        else:
            chosen.append(t)
    drifts.refuse_empty(chosen, target)
    drifts.staging_only(source, target, exclude, drift)
    if policy == drifts.REFUSE:
        drifts.raise_problems(drifts.refused(chosen, target))
    problems, units = [], []
    for t in chosen:
        tgt = target.tables.get(t.key)
        if tgt is None:
            if tables is not None:
                problems.append(f"table {t.label} (named with --table) is missing on the target")
            drift.prod_only_tables.append(t.label)
            continue
        cols, found = drifts.compare_table(t, tgt, drift)
        problems += found
        if policy == drifts.REFUSE:  # today's columns: every one prod has (all checked above)
            cols = copy_columns(t)
        units.append(Unit(t, tgt, cols, binary and binary_safe(t, tgt, cols),
                          staging_only=[c for c in tgt.columns if c not in t.columns]))
    problems += drifts.references_into_unwritten(target, units, drift)
    drifts.raise_problems(problems)
    return units, drift
