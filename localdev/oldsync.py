"""An emulation of the old, broken sync: what staging looked like before this project.

It recreates every table of the source from its column list (types, NOT NULL, other defaults),
with primary keys, unique/check/foreign keys, indexes, partitions and table grants, copies the
rows with their ids, and skips exactly what the old sync skipped: every `nextval(...)` default,
every sequence and every identity. Generic over any source schema, so the tests can break
edge-case schemas the same way. Small data only (tests and the demo): rows go through memory.
"""

from __future__ import annotations

import io

import psycopg2
from psycopg2 import sql

_TABLES = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispartition,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
       CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
       (SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
          JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid LIMIT 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY c.relispartition, c.oid
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attislocal,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
       CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END, a.attgenerated
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


def _qualified(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _create_types(s, t) -> None:
    """Enums and domains the columns may use (the old sync ran on prod's migrations' types)."""
    s.execute(
        "SELECT n.nspname, ty.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)"
        " FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace JOIN pg_enum e ON e.enumtypid = ty.oid"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') GROUP BY 1, 2, ty.oid ORDER BY ty.oid"
    )
    for schema, name, labels in s.fetchall():
        t.execute(sql.SQL("CREATE TYPE {} AS ENUM ({})").format(
            _qualified(schema, name), sql.SQL(", ").join(map(sql.Literal, labels))))
    s.execute(
        "SELECT n.nspname, ty.typname, format_type(ty.typbasetype, ty.typtypmod), ty.typnotnull,"
        " (SELECT string_agg(pg_get_constraintdef(c.oid), ' ') FROM pg_constraint c WHERE c.contypid = ty.oid)"
        " FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace"
        " WHERE ty.typtype = 'd' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY ty.oid"
    )
    for schema, name, base, notnull, checks in s.fetchall():
        t.execute(sql.SQL("CREATE DOMAIN {} AS {}{}{}").format(
            _qualified(schema, name), sql.SQL(base), sql.SQL(" NOT NULL" if notnull else ""),
            sql.SQL(" " + checks if checks else "")))


def replicate_like_old_sync(source, target) -> list[str]:
    """Build target's tables from source as the old sync did; returns the tables created."""
    created = []
    with source.cursor() as s, target.cursor() as t:
        s.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog','information_schema',"
                  "'public') AND nspname NOT LIKE 'pg\\_%%'")
        for (schema,) in s.fetchall():
            t.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        _create_types(s, t)
        s.execute(_TABLES)
        tables = s.fetchall()
        for oid, schema, name, _kind, is_partition, partkey, bound, parent in tables:
            s.execute(_COLUMNS, (oid,))
            cols = []
            for col, typ, notnull, islocal, default, genexpr, gen in s.fetchall():
                if is_partition:
                    continue
                if parent and not islocal:
                    continue
                parts = [sql.Identifier(col), sql.SQL(typ)]
                if notnull:
                    parts.append(sql.SQL("NOT NULL"))
                if default and "nextval(" not in default:
                    parts.append(sql.SQL("DEFAULT " + default))
                if genexpr:
                    kind = "STORED" if gen == "s" else "VIRTUAL"
                    parts.append(sql.SQL("GENERATED ALWAYS AS ({}) {}").format(sql.SQL(genexpr), sql.SQL(kind)))
                cols.append(sql.SQL(" ").join(parts))
            pschema, _, pname = (parent or "").partition(".")
            if is_partition:
                stmt = sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
                    _qualified(schema, name), _qualified(pschema, pname), sql.SQL(bound))
            else:
                stmt = sql.SQL("CREATE TABLE {} ({})").format(_qualified(schema, name), sql.SQL(", ").join(cols))
                if parent:
                    stmt += sql.SQL(" INHERITS ({})").format(_qualified(pschema, pname))
                if partkey:
                    stmt += sql.SQL(" PARTITION BY " + partkey)
            t.execute(stmt)
            created.append(f"{schema}.{name}")
        # Rows, table by table (leaves only: a partitioned parent holds none itself).
        for oid, schema, name, relkind, *_ in tables:
            if relkind != "r":
                continue
            s.execute("SELECT string_agg(quote_ident(attname), ',' ORDER BY attnum) FROM pg_attribute"
                      " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attgenerated = ''", (oid,))
            collist = sql.SQL(s.fetchone()[0])
            buf = io.StringIO()
            s.copy_expert(sql.SQL("COPY {} ({}) TO STDOUT").format(_qualified(schema, name), collist).as_string(s),
                          buf)
            buf.seek(0)
            t.copy_expert(sql.SQL("COPY {} ({}) FROM STDIN").format(_qualified(schema, name), collist).as_string(t),
                          buf)
        # Keys and indexes after the data, the way a loader would add them.
        s.execute(
            "SELECT n.nspname, c.relname, con.conname, pg_get_constraintdef(con.oid) FROM pg_constraint con"
            " JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE con.contype IN ('p','u','c','f','x') AND con.conparentid = 0 AND con.conislocal"
            "   AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\\_%%'"
            " ORDER BY con.contype = 'f', con.oid"
        )
        for schema, table, conname, condef in s.fetchall():
            t.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} " + condef).format(
                _qualified(schema, table), sql.Identifier(conname)))
        s.execute(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)"
            "   AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)"
            "   AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\\_%%'"
        )
        for (indexdef,) in s.fetchall():
            t.execute(sql.SQL(indexdef))
        # Table grants (the roles live on the same cluster in the tests and the demo).
        s.execute(
            "SELECT n.nspname, c.relname, a.privilege_type,"
            "       CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a"
            " WHERE c.relkind IN ('r','p') AND a.grantee <> c.relowner"
            "   AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg\\_%%'"
        )
        for schema, table, priv, grantee in s.fetchall():
            who = sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC")
            t.execute(sql.SQL("GRANT " + priv + " ON {} TO {}").format(_qualified(schema, table), who))
    source.commit()
    target.commit()
    return created


def replicate_like_old_sync_dsn(source_dsn: str, target_dsn: str) -> list[str]:
    """replicate_like_old_sync() between two databases given by DSN, on connections of its own."""
    source, target = psycopg2.connect(source_dsn), psycopg2.connect(target_dsn)
    try:
        return replicate_like_old_sync(source, target)
    finally:
        source.close()
        target.close()
