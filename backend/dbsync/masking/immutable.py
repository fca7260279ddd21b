"""Every `sql:` and `where:` fragment must be IMMUTABLE, as PostgreSQL judges a generated column's
expression: no subquery, every function, operator and cast immutable.

The server is asked rather than a list of names: a list would miss `current_setting('dbsync.' ||
'mask_key')` (the masking key, spelt another way), `now()`, `CURRENT_DATE` (no function call in the
catalog at all) and casts whose text depends on settings (`created_at::text`). Each fragment is
added as a stored generated column of a temporary table with the source table's columns and
prod's column types, inside a savepoint rolled back at once, so nothing is written. That needs a
session that may create a temporary table: staging's (prod's is READ ONLY, and a hot standby
never can), or the database `db-sync mask` rewrites. A user's function passes if it is declared
IMMUTABLE: it is trusted code, like the rules file.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import Table
from dbsync.errors import DbSyncError, pg_message, shown_name
from dbsync.masking.binding import MaskingPlan

NOT_IMMUTABLE = "42P17"  # "generation expression is not immutable"
_TEMP = sql.Identifier("dbsync_fragment_check")
_SAVEPOINT = sql.Identifier("dbsync_immutable")


@dataclass(frozen=True)
class Fragment:
    """One fragment of the rules and the generated column that checks it."""

    table: Table
    column: str | None  # None: the table's `where:`
    text: str
    expression: sql.Composable  # what the COPY evaluates
    type: str

    @property
    def label(self) -> str:
        if self.column is None:
            return f"{self.table.label} where {self.text!r}"
        return f"{self.table.label}.{shown_name(self.column)} sql {self.text!r}"


def fragments(plan: MaskingPlan) -> list[Fragment]:
    """Every `sql:` and `where:` fragment of the plan's tables, in table order."""
    out = []
    for masked in sorted(plan.tables.values(), key=lambda m: m.table.key):
        for column, rule in masked.rule.columns.items():
            if rule.strategy == "sql" and column in masked.expressions:
                out.append(Fragment(masked.table, column, rule.sql, masked.expressions[column],
                                    masked.table.columns[column].type))
        if masked.where:
            expression = sql.SQL("({})").format(sqltext.fragment(masked.where))
            out.append(Fragment(masked.table, None, masked.where, expression, "boolean"))
    return out


def _generated_name(table: Table) -> sql.Identifier:
    name = "dbsync_fragment"
    while name in table.columns:
        name += "_"
    return sql.Identifier(name)


def _statements(fragment: Fragment) -> tuple[sql.Composable, sql.Composable]:
    columns = [sql.SQL("{} {}").format(sql.Identifier(name), sqltext.type_name(col.type))
               for name, col in fragment.table.columns.items()]
    create = sql.SQL("CREATE TEMP TABLE {} ({})").format(_TEMP, sql.SQL(", ").join(columns))
    add = sql.SQL("ALTER TABLE {} ADD COLUMN {} {} GENERATED ALWAYS AS ({}) STORED").format(
        _TEMP, _generated_name(fragment.table), sqltext.type_name(fragment.type), fragment.expression)
    return create, add


def _problem(fragment: Fragment, exc: psycopg2.Error, side: str) -> str:
    if exc.pgcode == NOT_IMMUTABLE:
        return f"{fragment.label} is not IMMUTABLE (a function, operator or cast in it is not)"
    return f"{fragment.label} failed the immutability check on the {side}: {pg_message(exc)}"


def refuse_mutable(conn, plan: MaskingPlan, side: str = "target") -> None:
    """DbSyncError listing every fragment the server does not accept as IMMUTABLE, checked on
    `conn` (staging, or the database masked in place; `side` names it) inside a savepoint of its
    transaction, rolled back after each fragment."""
    problems = []
    with conn.cursor() as cur:
        for fragment in fragments(plan):
            create, add = _statements(fragment)
            cur.execute(sql.SQL("SAVEPOINT {}").format(_SAVEPOINT))
            try:
                try:
                    cur.execute(create)
                except psycopg2.Error as exc:
                    raise DbSyncError(f"cannot check the {plan.rules.origin}'s fragments on the {side}: the check"
                                      f" needs a temporary table there ({pg_message(exc)})",
                                      sqlstate=exc.pgcode, side=side) from None
                cur.execute(add)
            except psycopg2.Error as exc:
                problems.append(_problem(fragment, exc, side))
            finally:
                cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(_SAVEPOINT))
                cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(_SAVEPOINT))
    if problems:
        raise DbSyncError(f"the {plan.rules.origin} cannot be used, nothing was written: " + "; ".join(problems)
                          + " — every sql: and where: fragment must be IMMUTABLE (docs/masking.md)", side=side)
