"""Triggers, foreign keys and indexes of a set of tables, read from pg_catalog: what the sync
sets aside for the load, and the references that would tie the set to tables outside it.

Definitions are the server's own deparse (pg_get_constraintdef, pg_get_indexdef), read under
qualified_names so that they replay exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync.catalog.query import USER_SCHEMA, WITH_RELS, fetch, qualified_names


@dataclass(frozen=True)
class Trigger:
    schema: str
    table: str
    name: str
    enabled: str  # pg_trigger.tgenabled: O (origin), R (replica), A (always)


@dataclass(frozen=True)
class ForeignKey:
    schema: str
    table: str
    name: str
    definition: str
    comment: str | None


@dataclass(frozen=True)
class Index:
    table_oid: int
    schema: str
    table: str
    name: str
    definition: str
    constraint: str | None  # the primary key, unique or exclusion constraint it backs
    constraint_definition: str | None
    comment: str | None
    constraint_comment: str | None
    clustered: bool
    replica_identity: bool


@dataclass(frozen=True)
class Reference:
    """A foreign key's columns and the columns they reference."""

    name: str
    columns: tuple[str, ...]
    target: tuple[str, str]  # (schema, table) referenced
    target_columns: tuple[str, ...]
    # pg_constraint.confdeltype: a NO ACTION, r RESTRICT, c CASCADE, n SET NULL, d SET DEFAULT
    on_delete: str = "a"


@dataclass
class Keys:
    """A table's keys: what masking must not break."""

    primary: tuple[str, ...] = ()
    unique: set[str] = field(default_factory=set)  # columns of any unique index
    references: list[Reference] = field(default_factory=list)
    unique_indexes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # index name → its key columns


# An index's key columns in key order (unnest alone keeps no order a join must respect), without
# its INCLUDE columns (after indnkeyatts), which belong to no key.
_INDEX_KEY = sql.SQL("""ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n
             WHERE k.i <= x.indnkeyatts ORDER BY k.i)""")
_KEYS = sql.SQL("""
SELECT n.nspname, c.relname, 'p', ic.relname, {index_key}, NULL::name, NULL::name, NULL::name[], NULL::"char"
FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = x.indexrelid
WHERE x.indisprimary AND {user_schema}
UNION ALL
SELECT n.nspname, c.relname, 'u', ic.relname, {index_key}, NULL, NULL, NULL, NULL
FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = x.indexrelid
WHERE x.indisunique AND NOT x.indisprimary AND {user_schema}
UNION ALL
SELECT n.nspname, c.relname, 'f', con.conname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n ORDER BY k.i),
       rn.nspname, r.relname,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = k.n ORDER BY k.i),
       con.confdeltype
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND {user_schema}
""").format(user_schema=USER_SCHEMA, index_key=_INDEX_KEY)


def keys(cur) -> dict[tuple[str, str], Keys]:
    """(schema, table) → its primary key, unique columns and foreign keys, for every user table."""
    out: dict[tuple[str, str], Keys] = {}
    for schema, table, kind, name, columns, rschema, rtable, rcolumns, on_delete in fetch(cur, _KEYS):
        k = out.setdefault((schema, table), Keys())
        if kind == "p":
            k.primary = tuple(columns)
        if kind in ("p", "u"):
            k.unique.update(columns)
            k.unique_indexes[name] = tuple(columns)
        else:
            k.references.append(Reference(name, tuple(columns), (rschema, rtable), tuple(rcolumns), on_delete))
    return out


_USER_TRIGGERS = sql.SQL("""{with_rels}
SELECT n.nspname, c.relname, t.tgname, t.tgenabled
FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgparentid = 0
ORDER BY 1, 2, 3
""").format(with_rels=WITH_RELS)

_FOREIGN_KEYS = sql.SQL("""{with_rels}
SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid),
       obj_description(con.oid, 'pg_constraint')
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND (con.conrelid IN (SELECT oid FROM rels) OR con.confrelid IN (SELECT oid FROM rels))
ORDER BY 1, 2, 3
""").format(with_rels=WITH_RELS)

# Indexes of plain tables that nothing else depends on once the foreign keys are gone, in the
# default tablespace and without per-column statistics targets: everything needed to rebuild them
# exactly. Partitioned tables and partitions keep theirs (attached index trees would come back
# with generated names).
_REBUILDABLE_INDEXES = """
SELECT x.indrelid, n.nspname, c.relname, ic.relname, pg_get_indexdef(x.indexrelid),
       con.conname, pg_get_constraintdef(con.oid), obj_description(x.indexrelid, 'pg_class'),
       obj_description(con.oid, 'pg_constraint'), x.indisclustered, x.indisreplident
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = x.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = x.indexrelid AND con.conrelid = x.indrelid
                            AND con.contype IN ('p', 'u', 'x')
WHERE x.indrelid = ANY(%s) AND c.relkind = 'r' AND NOT c.relispartition
  AND x.indisvalid AND x.indisready AND x.indislive AND ic.reltablespace = 0
  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = x.indexrelid OR h.inhparent = x.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = x.indexrelid
                  AND a.attstattarget IS NOT NULL AND a.attstattarget >= 0)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass
                  AND d.refobjid = x.indexrelid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refclassid = 'pg_constraint'::regclass
                  AND d.refobjid = con.oid AND NOT (d.classid = 'pg_class'::regclass AND d.objid = x.indexrelid))
ORDER BY x.indrelid, con.contype = 'p' DESC, ic.relname
"""

_OUTSIDE_REFERENCES = sql.SQL("""{with_rels}
SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(con.conname),
       quote_ident(rn.nspname) || '.' || quote_ident(r.relname)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE con.contype = 'f' AND con.confrelid IN (SELECT oid FROM rels)
  AND con.conrelid NOT IN (SELECT oid FROM rels) AND NOT con.conrelid = ANY(%s::oid[])
ORDER BY 1, 2
""").format(with_rels=WITH_RELS)


def user_triggers(cur, table_oids: list[int]) -> list[Trigger]:
    """The enabled, user-defined triggers of these tables and their partitions (not those a
    partition inherits from its parent: they follow the parent's)."""
    cur.execute(_USER_TRIGGERS, (table_oids,))
    return [Trigger(*row) for row in cur.fetchall()]


def foreign_keys(cur, table_oids: list[int]) -> list[ForeignKey]:
    """Foreign keys on or into these tables and their partitions (top-level constraints only)."""
    with qualified_names(cur):
        cur.execute(_FOREIGN_KEYS, (table_oids,))
        return [ForeignKey(*row) for row in cur.fetchall()]


def rebuildable_indexes(cur, table_oids: list[int]) -> list[Index]:
    with qualified_names(cur):
        cur.execute(_REBUILDABLE_INDEXES, (table_oids,))
        return [Index(*row) for row in cur.fetchall()]


def outside_references(cur, table_oids: list[int], ignored: list[int] = ()) -> list[str]:
    """Foreign keys from tables outside the set into it, as `referencing (constraint) references
    referenced`; those of the `ignored` tables (the drift policy's, dbsync.sync.drift) left out."""
    cur.execute(_OUTSIDE_REFERENCES, (table_oids, list(ignored)))
    return [f"{a} ({con}) references {b}" for a, con, b in cur.fetchall()]
