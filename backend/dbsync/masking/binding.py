"""The rules bound to one database's catalog: per table, the expression each column travels as,
the rows that travel, and every reason to refuse — all found before anything is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import Catalog, Table, TableKey
from dbsync.errors import DbSyncError, pg_message, shown_name
from dbsync.masking import gate, strategies
from dbsync.masking.rules import ColumnRule, Rules, TableRule

# Strategies whose output is as unique as their input (two distinct values never meet).
INJECTIVE = frozenset({"keep", "email", "hash", "null"})
NON_TEXT_OK = frozenset({"keep", "null", "value", "sql", "hash"})


@dataclass
class MaskedTable:
    """How one table travels under the rules."""

    table: Table
    rule: TableRule
    expressions: dict[str, sql.Composable] = field(default_factory=dict)  # masked columns only

    @property
    def copy_rows(self) -> bool:
        return self.rule.copy_rows

    @property
    def where(self) -> str | None:
        return self.rule.where

    def select_item(self, column: str) -> sql.Composable:
        expr = self.expressions.get(column)
        return sql.Identifier(column) if expr is None else sql.SQL("{} AS {}").format(expr, sql.Identifier(column))


@dataclass
class Uncovered:
    table: str
    column: str
    kind: str  # what its name says it holds
    flagged_by: str = ""  # "<kind>: <what in its name, type or table said so>"

    def __str__(self) -> str:
        return f"{self.table}.{shown_name(self.column)} ({self.kind})"


@dataclass
class MaskingPlan:
    rules: Rules | None
    tables: dict[TableKey, MaskedTable]
    uncovered: list[Uncovered]

    @property
    def keyed(self) -> bool:
        return self.rules is not None and self.rules.keyed


def _table_for(catalog: Catalog, name: str) -> Table | None:
    for t in catalog.tables.values():
        if name in (f"{t.schema}.{t.name}", t.label):
            return t
    return None


def _fit_problem(where: str, rule: ColumnRule, column_type: str, not_null: bool) -> str | None:
    s = rule.strategy
    if s == "null" and not_null:
        return f"{where}: null on a NOT NULL column"
    if s in strategies.DATE_STRATEGIES:
        return None if strategies.date_type(column_type) in strategies.DATE_TYPES else (
            f"{where}: {s} applies to date, timestamp and timestamptz columns, not {column_type}")
    if s in NON_TEXT_OK and s != "hash":
        return None
    if s == "hash":
        if strategies.is_text(column_type) or column_type in strategies.HASHABLE:
            length = strategies.type_length(column_type) if strategies.is_text(column_type) else None
            if length is not None and length < strategies.OUTPUT_LENGTH["hash"]:
                return f"{where}: hash gives 64 characters, more than {column_type} holds"
            return None
        return f"{where}: hash applies to text, bytea, uuid and integer columns, not {column_type}"
    if not strategies.is_text(column_type):
        return f"{where}: {s} gives text, which does not fit {column_type}"
    longest, length = strategies.OUTPUT_LENGTH.get(s), strategies.type_length(column_type)
    if longest is not None and length is not None and longest > length:
        return f"{where}: {s} gives up to {longest} characters, more than {column_type} holds"
    return None


def _key_problems(catalog: Catalog, table: Table, rule: TableRule) -> list[str]:
    """Masking a key would break what it identifies: a primary key, a sequence-fed column, or the
    uniqueness of a unique one."""
    problems = []
    keys = catalog.keys.get(table.key)
    fed = catalog.fed_columns()
    for column, col_rule in rule.columns.items():
        if col_rule.strategy == "keep":
            continue
        where = f"{table.label}.{shown_name(column)}"
        if keys and column in keys.primary:
            problems.append(f"{where}: a rule on a primary key column")
        elif (table.key, column) in fed:
            problems.append(f"{where}: a rule on a sequence-fed column")
        elif keys and column in keys.unique and col_rule.strategy not in INJECTIVE:
            problems.append(f"{where}: {col_rule.strategy} on a unique column would make duplicates"
                            f" ({_unique_indexes(keys, column)})")
    return problems


def _unique_indexes(keys, column: str) -> str:
    names = sorted(name for name, cols in keys.unique_indexes.items() if column in cols)
    return f"unique index{'es' if len(names) > 1 else ''} {', '.join(map(shown_name, names))}"


def duplicate_problems(plan: MaskingPlan, keys: dict, copied: dict[TableKey, list[str]]) -> list[str]:
    """A strategy that can map two values to one, on a copied column that a unique index of
    *staging* (`keys`: its catalog's keys) covers: the index rebuild would fail after the copy."""
    problems = []
    for key, masked in sorted(plan.tables.items()):
        found = keys.get(key)
        for column, rule in masked.rule.columns.items():
            if (found and column in found.unique and column in copied.get(key, ()) and rule.strategy not in INJECTIVE
                    and masked.copy_rows):
                problems.append(f"{masked.table.label}.{shown_name(column)}: {rule.strategy} would make duplicates in"
                                f" staging's {_unique_indexes(found, column)}")
    return problems


def _reference_problems(catalog: Catalog, rules: Rules) -> list[str]:
    """A foreign key holds after masking only if both its sides are masked the same way."""
    problems = []
    for key, keys in sorted(catalog.keys.items()):
        for ref in keys.references:
            child = tuple(_strategy(catalog, rules, key, c) for c in ref.columns)
            parent = tuple(_strategy(catalog, rules, ref.target, c) for c in ref.target_columns)
            if child != parent:
                problems.append(f"foreign key {shown_name(ref.name)} of {catalog.tables[key].label}"
                                f" ({', '.join(child)}) references {catalog.tables[ref.target].label}"
                                f" ({', '.join(parent)}): both sides must be masked the same way")
    return problems


def _strategy(catalog: Catalog, rules: Rules, key: TableKey, column: str) -> str:
    t = catalog.tables.get(key)
    rule = t and (rules.tables.get(f"{t.schema}.{t.name}") or rules.tables.get(t.label))
    col = rule.columns.get(column) if rule else None
    return "keep" if col is None else col.describe()


def bind(rules: Rules | None, catalog: Catalog, table_keys: set[TableKey],
         copied: dict[TableKey, list[str]] | None = None) -> MaskingPlan:
    """The rules against the catalog, for the tables being synced (`copied`: the columns that
    travel, where not all do: the gate asks nothing of the others); DbSyncError listing every problem."""
    if rules is None:
        return MaskingPlan(None, {}, _uncovered(None, catalog, table_keys, copied))
    problems: list[str] = []
    tables: dict[TableKey, MaskedTable] = {}
    for name, rule in rules.tables.items():
        table = _table_for(catalog, name)
        if table is None:
            problems.append(f"{name}: no such table")
            continue
        masked = MaskedTable(table, rule)
        for column, col_rule in rule.columns.items():
            col = table.columns.get(column)
            where = f"{table.label}.{shown_name(column)}"
            if col is None:
                problems.append(f"{where}: no such column")
            elif col.generated:
                problems.append(f"{where}: a generated column (the target computes it)")
            elif problem := _fit_problem(where, col_rule, col.type, col.not_null):
                problems.append(problem)
            elif col_rule.strategy != "keep":
                masked.expressions[column] = strategies.expression(col_rule, column, col.type)
        problems += _key_problems(catalog, table, rule)
        tables[table.key] = masked
    problems += _reference_problems(catalog, rules)
    if problems:
        raise DbSyncError(f"the {rules.origin} cannot be used ({len(problems)} problem"
                          f"{'s' if len(problems) > 1 else ''}), nothing was written: " + "; ".join(problems))
    return MaskingPlan(rules, {k: v for k, v in tables.items() if k in table_keys},
                       _uncovered(rules, catalog, table_keys, copied))


def _uncovered(rules: Rules | None, catalog: Catalog, table_keys: set[TableKey],
               copied: dict[TableKey, list[str]] | None = None) -> list[Uncovered]:
    """Columns the gate says hold personal data and that no rule covers (`keep` covers) nor
    `not_personal:` clears."""
    found = []
    repeated = gate.conventions(t.columns for t in catalog.tables.values() if not t.is_partition)
    for key in sorted(table_keys):
        table = catalog.tables[key]
        rule = rules and (rules.tables.get(f"{table.schema}.{table.name}") or rules.tables.get(table.label))
        if rule and not rule.copy_rows:
            continue  # no row travels
        keys = catalog.keys.get(key)
        referencing = {c for ref in (keys.references if keys else []) for c in ref.columns}
        for name, col in table.columns.items():
            if (rule and name in rule.columns) or (rules and rules.cleared(table.schema, table.name, name)):
                continue
            if copied is not None and name not in copied.get(key, ()) and not col.generated:
                continue  # prod's own column: it never travels
            facts = gate.Column(table.name, name, col.type, name in referencing, tuple(table.columns))
            flagged = gate.flag(facts, rules.personal_data if rules else (), repeated)
            if flagged:
                found.append(Uncovered(table.label, name, flagged.kind, str(flagged)))
    return found


def refuse_uncovered(plan: MaskingPlan) -> None:
    """The gate: with rules in effect, no personal-data column may travel unreviewed."""
    if plan.rules is not None and plan.uncovered:
        raise DbSyncError(f"the {plan.rules.origin} covers no rule for {len(plan.uncovered)} column(s) whose names"
                          " say personal data, so nothing was written: " + ", ".join(map(str, plan.uncovered))
                          + " — add a rule for each (keep, if it holds none)")


def verify_fragments(conn, plan: MaskingPlan) -> None:
    """Let the server parse every `sql:` and `where:` fragment in place, without running anything
    (PREPARE only parses and plans), inside a savepoint so that a refusal leaves the session's
    transaction (the source's snapshot) intact. That they are IMMUTABLE is checked on another
    session (dbsync.masking.immutable): this one may be prod's, READ ONLY."""
    problems = []
    with conn.cursor() as cur:
        for masked in plan.tables.values():
            checks = [(f"{masked.table.label}.{shown_name(c)}", sql.SQL("SELECT {} FROM ONLY {}").format(
                e, masked.table.ident)) for c, e in masked.expressions.items()
                if masked.rule.columns[c].strategy in ("sql", "value")]
            if masked.where:
                checks.append((f"{masked.table.label} where", sql.SQL("SELECT 1 FROM ONLY {} WHERE ({})").format(
                    masked.table.ident, sqltext.fragment(masked.where))))
            for label, query in checks:
                cur.execute("SAVEPOINT dbsync_fragment")
                try:
                    cur.execute(sql.SQL("PREPARE dbsync_fragment AS {}").format(query))
                    cur.execute("DEALLOCATE dbsync_fragment")
                    cur.execute("RELEASE SAVEPOINT dbsync_fragment")
                except psycopg2.Error as exc:
                    cur.execute("ROLLBACK TO SAVEPOINT dbsync_fragment")
                    problems.append(f"{label}: {pg_message(exc)}")
    if problems:
        raise DbSyncError(f"the {plan.rules.origin} cannot be used, nothing was written: " + "; ".join(problems))
