"""The drift policy: what the sync does where staging's schema and prod's differ (docs/sync.md,
"Schema drift"), the same for a full and an incremental sync.

`tolerate` (the default): copy what both sides have, keep what staging alone has (its tables are
written only as their own foreign keys declare, dbsync.sync.staging_only; its columns keep their
values), refuse only what would lose data or leave staging broken, and report every difference.
`refuse`: any difference a full copy cannot carry refuses the sync, as before the policy existed.
An excluded table (`--exclude-table`, the rules' `exclude:`) is treated as staging's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from dbsync.catalog import Catalog, Table, TableKey
from dbsync.compare import schema_differences, type_compatible
from dbsync.errors import DbSyncError, shown_name
from dbsync.results import SchemaDrift

TOLERATE, REFUSE = "tolerate", "refuse"
POLICIES = (TOLERATE, REFUSE)
# Foreign-key actions as pg_constraint.confdeltype spells them.
ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass
class Drift:
    """What differs between the two schemas, and what the sync did about it."""

    policy: str = TOLERATE
    prod_only_tables: list[str] = field(default_factory=list)
    prod_only_columns: list[str] = field(default_factory=list)
    staging_only_tables: list[str] = field(default_factory=list)
    staging_only_columns: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    unwritten: set[TableKey] = field(default_factory=set)  # staging's tables written only by their own keys
    columns_reset: list[str] = field(default_factory=list)  # staging-only columns of tables without a primary key
    orphans: dict[str, dict[str, int]] = field(default_factory=dict)  # table → {deleted, nulled, defaulted}

    def count(self, table: str, what: str, n: int) -> None:
        if n:
            counts = self.orphans.setdefault(table, {})
            counts[what] = counts.get(what, 0) + n

    def warning(self) -> str | None:
        """The one line saying what prod has that staging lacks (not copied), if anything."""
        missing = self.prod_only_tables + self.prod_only_columns
        if not missing:
            return None
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        return (f"prod has {len(missing)} table(s) or column(s) staging lacks, not copied: {shown}"
                " (run staging's migrations, or --exclude-table to say so)")

    def report(self) -> SchemaDrift:
        return SchemaDrift(policy=self.policy, prod_only_tables=self.prod_only_tables,
                           prod_only_columns=self.prod_only_columns, staging_only_tables=self.staging_only_tables,
                           staging_only_columns=self.staging_only_columns, excluded=self.excluded,
                           columns_reset=self.columns_reset, orphans=self.orphans)


def is_excluded(table: Table, patterns: list[str]) -> bool:
    """Shell-style globs matched against `schema.table` (unquoted)."""
    return any(fnmatchcase(f"{table.schema}.{table.name}", p) for p in patterns)


def _column(table: Table, name: str) -> str:
    return f"{table.label}.{shown_name(name)}"


def compare_table(src: Table, tgt: Table, drift: Drift) -> tuple[list[str], list[str]]:
    """(the columns that travel, the problems that refuse the sync) for one table under `tolerate`;
    the prod-only and staging-only columns are noted in `drift`."""
    columns, problems = [], []
    for col in src.columns.values():
        other = tgt.columns.get(col.name)
        if other is None:
            drift.prod_only_columns.append(_column(src, col.name))
        elif bool(col.generated) != bool(other.generated):
            problems.append(f"column {_column(src, col.name)} is generated on the"
                            f" {'source' if col.generated else 'target'} only")
        elif not col.generated and not type_compatible(col.type, other.type):
            problems.append(f"column {_column(src, col.name)} is {col.type} on the source but {other.type}"
                            " on the target")
        elif not col.generated:
            columns.append(col.name)
    for other in tgt.columns.values():
        if other.name in src.columns:
            continue
        if other.not_null and other.default is None and not other.identity and not other.generated:
            problems.append(f"column {_column(src, other.name)} exists only on staging and is NOT NULL without a"
                            " default, so the rows prod brings cannot be loaded: on staging, give it a default"
                            " (ALTER TABLE … ALTER COLUMN … SET DEFAULT …) or drop its NOT NULL")
        else:
            drift.staging_only_columns.append(_column(tgt, other.name))
    return columns, problems


def refused(chosen: list[Table], target: Catalog) -> list[str]:
    """`refuse`: every difference a full copy cannot carry (today's refusal)."""
    return [p for t in chosen for p in schema_differences(t, target.tables.get(t.key))]


def refuse_empty(chosen: list[Table], target: Catalog) -> None:
    """Tolerance is for drift, not for a missing schema."""
    if not any(t.key in target.tables for t in chosen):
        raise DbSyncError(f"staging has none of the {len(chosen)} table(s) the sync would copy: create its schema"
                          " first (pg_dump --schema-only from prod into staging, or the application's migrations),"
                          " then sync; nothing was written")


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise DbSyncError(f"the target's schema differs from the source's ({len(problems)} difference"
                          f"{'s' if len(problems) > 1 else ''}), nothing was written: " + "; ".join(problems))


def staging_only(source: Catalog, target: Catalog, excluded: list[str], drift: Drift) -> None:
    """Staging's tables prod lacks, and the excluded ones staging has: the sync writes them only as
    their own foreign keys declare."""
    for t in sorted(target.tables.values(), key=lambda t: t.key):
        if t.is_partition:
            continue
        if t.key not in source.tables:
            drift.staging_only_tables.append(t.label)
            drift.unwritten.add(t.key)
        elif is_excluded(t, excluded):
            drift.unwritten.add(t.key)


def references_into_unwritten(target: Catalog, units, drift: Drift) -> list[str]:
    """A synced table's foreign key whose copied columns point into a table the sync does not write:
    prod's values would not find their rows there (refused now rather than when re-adding the key)."""
    problems = []
    for unit in units:
        keys = target.keys.get(unit.target.key)
        for ref in keys.references if keys else ():
            if ref.target in drift.unwritten and set(ref.columns) & set(unit.columns):
                problems.append(f"foreign key {shown_name(ref.name)} of {unit.label} references"
                                f" {target.tables[ref.target].label}, which the sync does not write (excluded, or"
                                " staging's own): sync that table too, or exclude both")
    return problems
