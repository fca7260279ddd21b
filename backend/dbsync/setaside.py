"""What the sync sets aside on the target for the load and puts back after it: the tables' own
triggers (disabled, so they cannot rewrite prod's rows), foreign keys on or into them (dropped,
re-added once the data is in) and indexes of plain tables (dropped, rebuilt right after each
table's COPY). All of it is DDL inside the sync's one target transaction, so a failed sync's
rollback brings everything back as it was.
"""

from __future__ import annotations

from psycopg2 import sql

from dbsync import schema
from dbsync.guards import WITH_RELS

# -- triggers ----------------------------------------------------------------------------------

_USER_TRIGGERS_SQL = sql.SQL("""{with_rels}
SELECT n.nspname, c.relname, t.tgname, t.tgenabled
FROM pg_trigger t JOIN rels r ON r.oid = t.tgrelid
JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND t.tgparentid = 0
ORDER BY 1, 2, 3
""").format(with_rels=WITH_RELS)


def disable_user_triggers(conn, oids: list[int]) -> list[tuple]:
    """The target's own triggers must not rewrite prod's rows on the way in (pg_dump
    --disable-triggers does the same; DISABLE TRIGGER on a named trigger needs only ownership)."""
    with conn.cursor() as cur:
        cur.execute(_USER_TRIGGERS_SQL, (oids,))
        found = cur.fetchall()
        for nsp, rel, name, _ in found:
            cur.execute(sql.SQL("ALTER TABLE {}.{} DISABLE TRIGGER {}").format(
                sql.Identifier(nsp), sql.Identifier(rel), sql.Identifier(name)))
    return found


_ENABLE = {"O": sql.SQL("ENABLE TRIGGER"), "R": sql.SQL("ENABLE REPLICA TRIGGER"),
           "A": sql.SQL("ENABLE ALWAYS TRIGGER")}


def restore_triggers(conn, found: list[tuple]) -> None:
    with conn.cursor() as cur:
        for nsp, rel, name, mode in found:
            cur.execute(sql.SQL("ALTER TABLE {}.{} {} {}").format(
                sql.Identifier(nsp), sql.Identifier(rel), _ENABLE[mode], sql.Identifier(name)))


# -- foreign keys ------------------------------------------------------------------------------

_FOREIGN_KEYS_SQL = sql.SQL("""{with_rels}
SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid),
       obj_description(con.oid, 'pg_constraint')
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND (con.conrelid IN (SELECT oid FROM rels) OR con.confrelid IN (SELECT oid FROM rels))
ORDER BY 1, 2, 3
""").format(with_rels=WITH_RELS)


def drop_foreign_keys(conn, oids: list[int]) -> list[tuple]:
    """Foreign keys on or into the synced tables, dropped for the load and re-added after it.

    Loading with them in place checks every row with its own lookup (millions of index probes);
    re-adding one validates the whole table in a single join. DDL is transactional, so a failed
    sync brings them back untouched. Definitions are the server's own deparse, fully qualified.
    """
    with conn.cursor() as cur:
        with schema.qualified_names(cur):
            cur.execute(_FOREIGN_KEYS_SQL, (oids,))
            found = cur.fetchall()
        for nsp, rel, name, _definition, _comment in found:
            cur.execute(sql.SQL("ALTER TABLE {}.{} DROP CONSTRAINT {}").format(
                sql.Identifier(nsp), sql.Identifier(rel), sql.Identifier(name)))
    return found


def restore_foreign_keys(conn, found: list[tuple]) -> None:
    with conn.cursor() as cur:
        for nsp, rel, name, definition, comment in found:
            table = sql.SQL("{}.{}").format(sql.Identifier(nsp), sql.Identifier(rel))
            cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                table, sql.Identifier(name), sql.SQL(definition)))
            if comment is not None:
                cur.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                    sql.Identifier(name), table, sql.Literal(comment)))


# -- indexes -----------------------------------------------------------------------------------

# Indexes of plain tables that nothing else depends on once the foreign keys are gone, in the
# default tablespace and without per-column statistics targets: everything needed to rebuild them
# exactly. Partitioned tables and partitions keep theirs (attached index trees would come back
# with generated names).
_INDEXES_SQL = """
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


def drop_indexes(conn, oids: list[int]) -> dict[int, list[tuple]]:
    """Indexes dropped for the load and rebuilt right after each table's COPY.

    Building an index once from the loaded table (a sort) is several times cheaper than
    inserting every row into it; pg_restore loads the same way. A failed sync's rollback brings
    the originals back. Definitions are the server's own deparse, fully qualified."""
    found: dict[int, list[tuple]] = {}
    with conn.cursor() as cur:
        with schema.qualified_names(cur):
            cur.execute(_INDEXES_SQL, (oids,))
            rows = cur.fetchall()
        for row in rows:
            relid, nsp, rel, index, _idef, conname, *_ = row
            if conname is not None:
                cur.execute(sql.SQL("ALTER TABLE {}.{} DROP CONSTRAINT {}").format(
                    sql.Identifier(nsp), sql.Identifier(rel), sql.Identifier(conname)))
            else:
                cur.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(nsp), sql.Identifier(index)))
            found.setdefault(relid, []).append(row)
    return found


def restore_indexes(conn, rows: list[tuple]) -> None:
    with conn.cursor() as cur:
        for _relid, nsp, rel, index, idef, conname, cdef, icomment, ccomment, clustered, replident in rows:
            table = sql.SQL("{}.{}").format(sql.Identifier(nsp), sql.Identifier(rel))
            ident = sql.SQL("{}.{}").format(sql.Identifier(nsp), sql.Identifier(index))
            if conname is not None:
                cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    table, sql.Identifier(conname), sql.SQL(cdef)))
                if index != conname:  # the constraint's index is named after it; keep the old name
                    cur.execute(sql.SQL("ALTER INDEX {}.{} RENAME TO {}").format(
                        sql.Identifier(nsp), sql.Identifier(conname), sql.Identifier(index)))
                if ccomment is not None:
                    cur.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                        sql.Identifier(conname), table, sql.Literal(ccomment)))
            else:
                cur.execute(sql.SQL(idef))
            if icomment is not None:
                cur.execute(sql.SQL("COMMENT ON INDEX {} IS {}").format(ident, sql.Literal(icomment)))
            if clustered:
                cur.execute(sql.SQL("ALTER TABLE {} CLUSTER ON {}").format(table, sql.Identifier(index)))
            if replident:
                cur.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
                    table, sql.Identifier(index)))
