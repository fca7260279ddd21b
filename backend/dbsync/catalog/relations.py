"""Tables, their columns and partitions, read from pg_catalog; and read_catalog(), the whole
picture of one database the sync compares with the other's."""

from __future__ import annotations

from psycopg2 import sql

from dbsync.catalog.constraints import keys
from dbsync.catalog.models import Catalog, Column, Table
from dbsync.catalog.query import USER_SCHEMA, WITH_RELS, fetch, qualified_names
from dbsync.catalog.sequences import read_feeds, read_sequences

_TABLES = sql.SQL("""
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispartition, pg_get_userbyid(c.relowner),
       quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND {user_schema}
""").format(user_schema=USER_SCHEMA)

_COLUMNS = sql.SQL("""
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END, a.attgenerated, a.attidentity
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND a.attnum > 0 AND NOT a.attisdropped
  AND {user_schema}
ORDER BY a.attrelid, a.attnum
""").format(user_schema=USER_SCHEMA)

_PARTITION_ROOTS = """
WITH RECURSIVE tree(child, root) AS (
    SELECT i.inhrelid, i.inhparent FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relkind = 'p' AND NOT p.relispartition
  UNION ALL
    SELECT i.inhrelid, t.root FROM pg_inherits i JOIN tree t ON i.inhparent = t.child
)
SELECT cn.nspname, c.relname, rn.nspname, r.relname
FROM tree JOIN pg_class c ON c.oid = tree.child JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class r ON r.oid = tree.root JOIN pg_namespace rn ON rn.oid = r.relnamespace
"""


_RELATION_BYTES = sql.SQL("""{with_rels}
SELECT coalesce(sum(pg_total_relation_size(oid)), 0) FROM rels
""").format(with_rels=WITH_RELS)


def relation_bytes(cur, table_oids: list[int]) -> int:
    """On-disk size of these tables with their partitions, indexes and TOAST."""
    cur.execute(_RELATION_BYTES, (table_oids,))
    return int(cur.fetchone()[0])


# The planner's row estimate of each table: reltuples, -1 for a table never analysed (or
# vacuumed); a partitioned table's own is always -1, so its estimate is the sum of its leaf
# partitions' (those analysed).
_ROW_ESTIMATES = sql.SQL("""
WITH RECURSIVE rels(oid, top) AS (
    SELECT o, o FROM unnest(%s::oid[]) o
  UNION
    SELECT i.inhrelid, r.top FROM pg_inherits i JOIN rels r ON i.inhparent = r.oid
    JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relispartition
)
SELECT r.top, sum(c.reltuples) FROM rels r JOIN pg_class c ON c.oid = r.oid
WHERE c.relkind = 'r' AND c.reltuples >= 0
GROUP BY r.top
""")


def row_estimates(cur, table_oids: list[int]) -> dict[int, int]:
    """oid → the planner's estimate of its rows; a table never analysed is missing."""
    cur.execute(_ROW_ESTIMATES, (table_oids,))
    return {oid: int(n) for oid, n in cur.fetchall()}


def partition_roots(cur) -> dict[tuple[str, str], tuple[str, str]]:
    """(schema, table) of every partition → the top-level partitioned table that holds it."""
    return {(cs, cn): (rs, rn) for cs, cn, rs, rn in fetch(cur, _PARTITION_ROOTS)}


def read_tables(cur) -> dict[int, Table]:
    """oid → every plain and partitioned table of the user schemas, with its columns."""
    tables = {row[0]: Table(*row) for row in fetch(cur, _TABLES)}
    for relid, name, typ, typid, notnull, default, generated, identity in fetch(cur, _COLUMNS):
        tables[relid].columns[name] = Column(name, typ, typid, notnull, default, generated, identity)
    return tables


def read_catalog(conn) -> Catalog:
    """Tables, columns, sequences and sequence feeds of every user schema, in a few queries,
    with names qualified (see qualified_names)."""
    with conn.cursor() as cur, qualified_names(cur):
        tables = {t.key: t for t in read_tables(cur).values()}
        roots = {(cs, cn): (rs, rn) for cs, cn, rs, rn in fetch(cur, _PARTITION_ROOTS)}
        by_oid = read_sequences(cur, user_schemas=True)
        # A feed's sequence may sit outside the user schemas; read_feeds reads those too.
        feeds = read_feeds(cur, sequences=by_oid)
        table_keys = keys(cur)
    by_oid.update({f.sequence.oid: f.sequence for f in feeds})
    return Catalog(tables, {s.key: s for s in by_oid.values()}, feeds, roots, table_keys)
