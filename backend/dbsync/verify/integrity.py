"""Staging's integrity, whoever wrote it: no foreign key dangles, no constraint is NOT VALID, and
the sync's record agrees with what is there. (Sequences: dbsync.sequences.check_report.)"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from dbsync.catalog import Catalog
from dbsync.catalog.query import USER_SCHEMA
from dbsync.errors import shown_name
from dbsync.sync import record
from dbsync.sync.units import Unit

SAMPLE_KEYS = 5

# One anti-join per foreign key: child rows whose key (every column set, as MATCH SIMPLE checks
# it) has no parent row. Counted first, from the key's columns alone (which an index on them and
# the parent's key answer without reading a row); a few of the rows' keys only when some dangle.
_DANGLING = sql.SQL("FROM {child} c WHERE {set} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match})")
_COUNT_DANGLING = sql.SQL("SELECT count(*) {}")
_SAMPLE_DANGLING = sql.SQL("SELECT (array_agg(concat_ws(', ', {shown})))[1:{n}] {rows}")
_NOT_VALID = sql.SQL("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), con.conname"
                     " FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid"
                     " JOIN pg_namespace n ON n.oid = c.relnamespace"
                     " WHERE NOT con.convalidated AND con.conparentid = 0 AND {} ORDER BY 1, 2").format(USER_SCHEMA)


@dataclass
class Problem:
    kind: str  # dangling_reference | not_valid | record
    table: str
    detail: str
    keys: list[str] | None = None


def dangling_references(cur, catalog: Catalog) -> list[Problem]:
    """Every foreign key of staging's catalog, staging-only tables included."""
    found = []
    for child_key, keys in sorted(catalog.keys.items()):
        child = catalog.tables.get(child_key)
        for ref in keys.references:
            parent = catalog.tables.get(ref.target)
            if child is None or parent is None:
                continue
            shown_cols = keys.primary or ref.columns
            rows = _DANGLING.format(
                child=child.ident, parent=parent.ident,
                set=sql.SQL(" AND ").join(sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in ref.columns),
                match=sql.SQL(" AND ").join(sql.SQL("p.{} = c.{}").format(sql.Identifier(t), sql.Identifier(c))
                                            for c, t in zip(ref.columns, ref.target_columns, strict=True)))
            cur.execute(_COUNT_DANGLING.format(rows))
            n = cur.fetchone()[0]
            if n:
                cur.execute(_SAMPLE_DANGLING.format(n=sql.Literal(SAMPLE_KEYS), rows=rows, shown=sql.SQL(", ").join(
                    sql.SQL("c.{}::text").format(sql.Identifier(c)) for c in shown_cols)))
                sample = cur.fetchone()[0]
                found.append(Problem("dangling_reference", child.label,
                                     f"{n} row(s) whose foreign key {shown_name(ref.name)} references no row of"
                                     f" {parent.label}", [f"{', '.join(shown_cols)} = {k}" for k in sample or []]))
    return found


def not_valid(cur) -> list[Problem]:
    cur.execute(_NOT_VALID)
    return [Problem("not_valid", table, f"constraint {shown_name(name)} is NOT VALID: rows may break it")
            for table, name in cur.fetchall()]


def record_problems(source, target, units: list[Unit], key, usable: dict[str, record.LastSync]) -> list[Problem]:
    """The record against what is there: every synced table recorded, from this source, with the
    fingerprint the rules and key give now. No record at all is not a problem (nothing is
    attributed then; the report says so)."""
    recorded = record.recorded_tables(target)
    if not recorded:
        return []
    sysid, database = record.source_identity(source)
    problems = []
    for unit in units:
        entry = recorded.get(unit.label)
        if entry is None:
            problems.append(Problem("record", unit.label, "the sync's record does not name this synced table"))
        elif entry[:2] != (sysid, database):
            problems.append(Problem("record", unit.label, "the sync's record names another source database"))
        elif entry[2] != record.fingerprint(source, unit, key):
            problems.append(Problem("record", unit.label, "the rules, the key or the columns changed since the last"
                                                          " sync: staging was masked otherwise"))
        elif unit.label not in usable:
            problems.append(Problem("record", unit.label, "the sync's record is too old to use (transaction ids"
                                                          " moved too far)"))
    return problems
