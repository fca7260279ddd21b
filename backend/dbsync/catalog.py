"""Read, from pg_catalog, which columns are fed by which sequence, and what could be repaired.

Everything comes from the catalogs (pg_class, pg_attribute, pg_attrdef, pg_depend, pg_sequence),
never from names or information_schema (which hides objects the role lacks privileges on):
- a DEFAULT calling nextval() depends on its sequence through its pg_attrdef row (deptype 'n'):
  serial columns and any column using a sequence it does not own;
- an identity column's sequence is an internal dependency (deptype 'i') of the column;
- a serial sequence is auto-dependent (deptype 'a') on its column: OWNED BY. A column that owns a
  sequence but has lost its default is what the old sync left behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg2.extensions

# Integer-like types whose data can be compared with a sequence value; a domain over one counts.
INTEGER_TYPES = {"int2": 2**15 - 1, "int4": 2**31 - 1, "int8": 2**63 - 1, "numeric": None}
SYSTEM_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
)


@dataclass
class Sequence:
    oid: int
    schema: str
    name: str
    qualified: str  # quoted as PostgreSQL would: public.books_id_seq, "My Schema"."Odd seq"
    type: str
    start: int
    increment: int
    minvalue: int
    maxvalue: int
    can_read: bool  # SELECT: read last_value / is_called
    can_update: bool  # UPDATE: setval()
    owned: bool  # the current role is (a member of) the owner: ALTER SEQUENCE
    cycle: bool = False
    exists: bool = True  # False for one the plan would create


@dataclass
class FedColumn:
    """A column whose next INSERT takes its value from a sequence (or should)."""

    table_oid: int
    schema: str
    table: str
    qualified_table: str
    column: str
    attnum: int
    type: str
    kind: str  # serial | identity | default (a sequence it does not own) | created
    has_default: bool  # False: the default is missing (owned sequence, or a PK with none)
    can_select: bool
    owns_table: bool
    lock_cost: int  # relations a max() over it locks: the table, its children, their indexes
    ancestors: list[int] = field(default_factory=list)
    sequence: Sequence | None = None


# A domain's ultimate base type (a domain over a domain over int is an int).
_BASE_TYPES = """
base_types AS (
    SELECT t.oid, t.typbasetype AS base FROM pg_type t WHERE t.typtype = 'd'
    UNION ALL
    SELECT b.oid, t.typbasetype FROM base_types b JOIN pg_type t ON t.oid = b.base AND t.typtype = 'd'
),
base_of AS (
    SELECT b.oid, b.base FROM base_types b JOIN pg_type t ON t.oid = b.base AND t.typtype <> 'd'
)"""
_BASE_TYPE_JOIN = """
LEFT JOIN base_of bo ON bo.oid = a.atttypid
JOIN pg_type bt ON bt.oid = coalesce(bo.base, a.atttypid)"""

_FED_COLUMNS = """
WITH RECURSIVE {base_types},
links AS (
    -- DEFAULT nextval('s'): the attrdef row depends on the sequence
    SELECT ad.adrelid AS tbl, ad.adnum AS att, d.refobjid AS seq, 'default' AS via
    FROM pg_attrdef ad
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
    UNION ALL
    -- identity (internal) and serial/OWNED BY (auto) dependencies of a sequence on a column
    SELECT d.refobjid, d.refobjsubid, d.objid, CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'owned' END
    FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('i', 'a') AND d.refobjsubid > 0
),
fed AS (
    SELECT l.tbl, l.att, l.seq, array_agg(DISTINCT l.via) AS vias
    FROM links l JOIN pg_class s ON s.oid = l.seq AND s.relkind = 'S'
    GROUP BY l.tbl, l.att, l.seq
)
SELECT f.tbl, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       a.attname, a.attnum,
       bt.typname, f.vias, a.attidentity <> '', ad.oid IS NOT NULL,
       has_column_privilege(c.oid, a.attnum, 'SELECT'), pg_has_role(c.relowner, 'USAGE'),
       s.oid, sn.nspname, s.relname, quote_ident(sn.nspname) || '.' || quote_ident(s.relname),
       format_type(ps.seqtypid, NULL),
       ps.seqstart, ps.seqincrement, ps.seqmin, ps.seqmax,
       has_sequence_privilege(s.oid, 'SELECT'), has_sequence_privilege(s.oid, 'UPDATE'),
       pg_has_role(s.relowner, 'USAGE'), ps.seqcycle
FROM fed f
-- views and foreign tables too: an INSERT through them takes the default as well
JOIN pg_class c ON c.oid = f.tbl AND c.relkind IN ('r', 'p', 'v', 'f') AND c.relpersistence <> 't'
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = f.tbl AND a.attnum = f.att AND NOT a.attisdropped{base_type_join}
LEFT JOIN pg_attrdef ad ON ad.adrelid = f.tbl AND ad.adnum = f.att
JOIN pg_class s ON s.oid = f.seq
JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_sequence ps ON ps.seqrelid = s.oid
WHERE {system_filter}
  -- an owned sequence feeds its column only while the column has no other default
  AND ('default' = ANY (f.vias) OR 'identity' = ANY (f.vias) OR ad.oid IS NULL)
  AND a.attgenerated = ''
ORDER BY n.nspname, c.relname, a.attnum
"""

# Integer single-column primary keys with no default, no identity and no sequence: what the old
# sync left of a serial column. A key that is also a foreign key (1:1 tables) takes its value
# from the referenced row, so it is left alone.
_MISSING_KEYS = """
WITH RECURSIVE {base_types}
SELECT c.oid, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname, a.attnum,
       bt.typname, has_column_privilege(c.oid, a.attnum, 'SELECT'), pg_has_role(c.relowner, 'USAGE'),
       has_schema_privilege(c.relnamespace, 'CREATE'), pg_get_userbyid(c.relowner)
FROM pg_constraint pk
JOIN pg_class c ON c.oid = pk.conrelid AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND c.relpersistence <> 't'
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pk.conkey[1]{base_type_join}
WHERE pk.contype = 'p' AND cardinality(pk.conkey) = 1 AND {system_filter}
  AND bt.typname IN ('int2', 'int4', 'int8')
  AND a.attidentity = '' AND a.attgenerated = ''
  AND NOT EXISTS (SELECT 1 FROM pg_attrdef ad WHERE ad.adrelid = c.oid AND ad.adnum = a.attnum)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                  WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid = a.attnum)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint fk WHERE fk.conrelid = c.oid AND fk.contype = 'f'
                  AND a.attnum = ANY (fk.conkey))
  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
ORDER BY n.nspname, c.relname
"""

# Relations a max() over each table locks (itself, its partitions/children, all their indexes),
# and each table's ancestors (a parent's max() already covers its children's rows).
_TREE = """
WITH RECURSIVE tree AS (
    SELECT t.oid AS root, t.oid AS rel, ARRAY[]::oid[] AS path FROM unnest(%s::oid[]) AS t(oid)
    UNION ALL
    SELECT tree.root, i.inhrelid, tree.path || tree.rel FROM tree JOIN pg_inherits i ON i.inhparent = tree.rel
    WHERE NOT i.inhrelid = ANY (tree.path)
),
up AS (
    SELECT t.oid AS child, i.inhparent AS parent FROM unnest(%s::oid[]) AS t(oid)
    JOIN pg_inherits i ON i.inhrelid = t.oid
    UNION
    SELECT up.child, i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.parent
)
SELECT r.root,
       count(*) + coalesce(sum((SELECT count(*) FROM pg_index x WHERE x.indrelid = r.rel)), 0),
       (SELECT coalesce(array_agg(up.parent), '{{}}') FROM up WHERE up.child = r.root)
FROM tree r GROUP BY r.root
"""


def _expand(template: str) -> str:
    """Fill a query template with the constant fragments above (never with input)."""
    return template.format(system_filter=SYSTEM_SCHEMA_FILTER, base_types=_BASE_TYPES,
                           base_type_join=_BASE_TYPE_JOIN)


def _execute(cur, query: str, args: tuple | None = None) -> list[tuple]:
    """Run a catalog query with nested loops off. Right after bulk DDL the catalogs' statistics
    are stale (a few rows where there are 100,000), and the planner's nested loops over them took
    minutes on 10,000 tables; hash joins take milliseconds whatever the statistics say."""
    cur.execute("SELECT current_setting('enable_nestloop'), set_config('enable_nestloop', 'off', true)")
    previous = cur.fetchone()[0]
    try:
        cur.execute(query, args)
        return cur.fetchall()
    finally:
        if not cur.connection.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
            cur.execute("SELECT set_config('enable_nestloop', %s, true)", (previous,))


Tables = set[tuple[str, str]]


def _selected(schema: str, table: str, schemas: list[str] | None, tables: Tables | None) -> bool:
    return (not schemas or schema in schemas) and (tables is None or (schema, table) in tables)


def read_fed_columns(cur, schemas: list[str] | None = None, tables: Tables | None = None) -> list[FedColumn]:
    """Every column fed by a sequence. With `schemas` / `tables` ((schema, table) pairs), the
    sequences that feed a column of those, with *all* the columns they feed (a shared sequence
    must clear every table)."""
    rows = _execute(cur, _expand(_FED_COLUMNS))
    sequences: dict[int, Sequence] = {}
    columns: list[FedColumn] = []
    for (tbl, schema, table, qtable, col, attnum, typ, vias, is_identity, has_default, can_select,
         owns_table, soid, sschema, sname, sq, stype, start, inc, smin, smax, s_read, s_update,
         s_owned, s_cycle) in rows:
        if typ not in INTEGER_TYPES:
            continue  # e.g. 'id-' || nextval('s') on a text column: no order to compare with
        seq = sequences.get(soid)
        if seq is None:
            seq = sequences[soid] = Sequence(soid, sschema, sname, sq, stype, int(start), int(inc),
                                             int(smin), int(smax), s_read, s_update, s_owned, s_cycle)
        vias = set(vias)
        kind = "identity" if is_identity else ("serial" if "owned" in vias else "default")
        columns.append(FedColumn(tbl, schema, table, qtable, col, attnum, typ, kind,
                                 has_default or is_identity, can_select, owns_table, 1, sequence=seq))
    if schemas or tables is not None:
        wanted = {c.sequence.oid for c in columns if _selected(c.schema, c.table, schemas, tables)}
        columns = [c for c in columns if c.sequence.oid in wanted]
    return columns


@dataclass
class MissingKey:
    """An integer primary key with no default: the plan gives it a serial-style sequence."""

    column: FedColumn
    table_owner: str
    can_create: bool
    insert_grantees: list[str | None] = field(default_factory=list)  # None = PUBLIC


def read_missing_keys(cur, schemas: list[str] | None = None, tables: Tables | None = None) -> list[MissingKey]:
    found = []
    for tbl, schema, table, qtable, col, attnum, typ, can_select, owns, can_create, owner in _execute(
            cur, _expand(_MISSING_KEYS)):
        if not _selected(schema, table, schemas, tables):
            continue
        fc = FedColumn(tbl, schema, table, qtable, col, attnum, typ, "created", False, can_select, owns, 1)
        found.append(MissingKey(fc, owner, can_create))
    if found:
        grantees = insert_grantees(cur, [m.column.table_oid for m in found])
        for m in found:
            m.insert_grantees = grantees.get(m.column.table_oid, [])
    return found


# Roles that may INSERT into a table: through a table grant or a grant on any of its columns
# (both count; a column grant does not hide the table's). The owner needs no grant.
_INSERT_GRANTEES = """
SELECT c.oid, CASE WHEN g.grantee = 0 THEN NULL ELSE pg_get_userbyid(g.grantee) END
FROM pg_class c, LATERAL aclexplode(c.relacl) g
WHERE c.oid = ANY (%(oids)s) AND g.privilege_type = 'INSERT' AND g.grantee <> c.relowner
UNION
SELECT c.oid, CASE WHEN g.grantee = 0 THEN NULL ELSE pg_get_userbyid(g.grantee) END
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped,
     LATERAL aclexplode(a.attacl) g
WHERE c.oid = ANY (%(oids)s) AND g.privilege_type = 'INSERT' AND g.grantee <> c.relowner
"""


def insert_grantees(cur, table_oids: list[int]) -> dict[int, list[str | None]]:
    """table oid → roles that may INSERT into it (None = PUBLIC), sorted: they need USAGE on a
    sequence that the table's default calls, or their next INSERT fails."""
    cur.execute(_INSERT_GRANTEES, {"oids": list(table_oids)})
    out: dict[int, list[str | None]] = {}
    for oid, who in cur.fetchall():
        out.setdefault(oid, []).append(who)
    return {oid: sorted(set(ws), key=lambda w: w or "") for oid, ws in out.items()}


def annotate_tree(cur, columns: list[FedColumn]) -> None:
    """Fill lock_cost and ancestors for each column's table, in one query."""
    oids = sorted({c.table_oid for c in columns})
    if not oids:
        return
    info = {root: (int(cost), list(anc)) for root, cost, anc in _execute(cur, _TREE, (oids, oids))}
    for c in columns:
        c.lock_cost, c.ancestors = info.get(c.table_oid, (1, []))


def relation_names(cur, schemas: set[str]) -> dict[str, dict[str, str]]:
    """schema → {relation name → relkind}, to choose names for new sequences."""
    cur.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ANY(%s)",
        (sorted(schemas),),
    )
    out: dict[str, dict[str, str]] = {s: {} for s in schemas}
    for schema, name, kind in cur.fetchall():
        out[schema][name] = kind
    return out


def lock_capacity(cur) -> int:
    """Entries of the shared lock table: max_locks_per_transaction × (max_connections +
    max_prepared_transactions). One transaction may use more than its share, but not all."""
    cur.execute(
        "SELECT current_setting('max_locks_per_transaction')::int"
        " * (current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int)"
    )
    return int(cur.fetchone()[0])
