"""Database helpers for the tests: the external test server, the old sync, snapshots."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from localdev.oldsync import replicate_like_old_sync_dsn


class ExternalServer:
    """TEST_DATABASE_URL's server, offering the same `dsn()` as LocalServer."""

    def __init__(self, url: str):
        self.url = url
        self.params = psycopg2.extensions.parse_dsn(url)
        self.has_ipv6 = False
        self.password = self.params.get("password")

    def dsn(self, dbname: str = "postgres", *, via: str = "socket", user: str | None = None,
            password: str | None = None) -> str:
        params = dict(self.params, dbname=dbname)
        if user is not None:
            params["user"] = user
            params.pop("password", None)
            if password:
                params["password"] = password
        return psycopg2.extensions.make_dsn(**params)


def old_sync_copy(source_dsn: str, target_dsn: str) -> None:
    """Break `target` from `source` the way the old sync did (for tests with their own schemas)."""
    replicate_like_old_sync_dsn(source_dsn, target_dsn)


def _rows(cur, query, args=None):
    cur.execute(query, args)
    return cur.fetchall()


def snapshot(dsn: str) -> dict:
    """Everything a sync could change: rows (hashed), sequences and their positions, column
    defaults and identity, constraints, triggers' enabled state. The tool's own schema (dbsync:
    the sync's record) is left out: it is staging's state about the sync, not data prod has."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            out = {}
            for schema, name in _rows(cur, "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
                                           " ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p')"
                                           " AND n.nspname NOT IN ('pg_catalog','information_schema','dbsync')"
                                           " AND n.nspname NOT LIKE 'pg\\_%%' ORDER BY 1, 2"):
                t = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
                cur.execute(sql.SQL("SELECT count(*), coalesce(sum(hashtext(x::text)::bigint), 0)"
                                    " FROM ONLY {} x").format(t))
                out[f"rows {schema}.{name}"] = cur.fetchone()
            for schema, name in _rows(cur, "SELECT schemaname, sequencename FROM pg_sequences ORDER BY 1, 2"):
                cur.execute(sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(name)))
                out[f"seq {schema}.{name}"] = cur.fetchone()
            out["sequences"] = _rows(cur, "SELECT * FROM pg_sequences ORDER BY 1, 2")
            out["columns"] = _rows(cur, "SELECT c.relname, a.attname, a.attidentity, a.attnotnull,"
                                        " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
                                        " JOIN pg_class c ON c.oid = a.attrelid"
                                        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                                        " WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0"
                                        " ORDER BY 1, 2")
            out["constraints"] = _rows(cur, "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                                            " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
                                            " ORDER BY 1, 2")
            out["triggers"] = _rows(cur, "SELECT tgrelid::regclass::text, tgname, tgenabled FROM pg_trigger"
                                         " WHERE NOT tgisinternal ORDER BY 1, 2")
        conn.rollback()
        return out
    finally:
        conn.close()


def execute(dsn: str, *statements: str) -> None:
    """Run the statements in one transaction on a connection of their own, and commit."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            for st in statements:
                cur.execute(st)
        conn.commit()
    finally:
        conn.close()


def query(dsn: str, text: str) -> list[tuple]:
    """The rows of one query, on a connection of its own."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(text)
            return cur.fetchall()
    finally:
        conn.close()
