"""The fragments every catalog query shares, and how catalog queries are run.

Fragments are psycopg2.sql objects composed into the readers' queries, never formatted as text.
"""

from __future__ import annotations

import contextlib

import psycopg2.extensions
from psycopg2 import sql

# The tool's own schema on staging (the sync's record, dbsync.sync.record; `mask`'s record): never
# user data, so never synced, compared or reported as drift.
TOOL_SCHEMA = "dbsync"
# User schemas only: not pg_catalog, pg_toast, pg_temp_N, information_schema, nor the tool's own. A
# regular expression rather than LIKE, so the text has no `%` for the driver to mistake for a placeholder.
USER_SCHEMA = sql.SQL("n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' AND n.nspname <> {}").format(
    sql.Literal(TOOL_SCHEMA))

# A domain's ultimate base type (a domain over a domain over int is an int): `bt` is joined on
# the column `a`.
BASE_TYPES = sql.SQL("""
base_types AS (
    SELECT t.oid, t.typbasetype AS base FROM pg_type t WHERE t.typtype = 'd'
    UNION ALL
    SELECT b.oid, t.typbasetype FROM base_types b JOIN pg_type t ON t.oid = b.base AND t.typtype = 'd'
),
base_of AS (
    SELECT b.oid, b.base FROM base_types b JOIN pg_type t ON t.oid = b.base AND t.typtype <> 'd'
)""")
BASE_TYPE_JOIN = sql.SQL("""
LEFT JOIN base_of bo ON bo.oid = a.atttypid
JOIN pg_type bt ON bt.oid = coalesce(bo.base, a.atttypid)""")

# `rels`: the tables given as an oid[] parameter plus, recursively, their partitions — every
# relation a sync of those tables truncates and loads. The guards, the set-aside and the lock
# estimate all agree on that set.
WITH_RELS = sql.SQL("""
WITH RECURSIVE rels(oid) AS (
    SELECT unnest(%s::oid[])
  UNION
    SELECT i.inhrelid FROM pg_inherits i JOIN rels r ON i.inhparent = r.oid
    JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relispartition
)""")


def fetch(cur, query: sql.Composable | str, args: tuple | dict | None = None) -> list[tuple]:
    """Run a catalog query with nested loops off. Right after bulk DDL the catalogs' statistics
    are stale (a few rows where there are 100,000), and the planner's nested loops over them took
    minutes on 10,000 tables; hash joins take milliseconds whatever the statistics say."""
    cur.execute("SELECT current_setting('enable_nestloop'), set_config('enable_nestloop', 'off', true)")
    previous = cur.fetchone()[0]
    try:
        cur.execute(query, args)
        return cur.fetchall()
    finally:
        if cur.connection.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_INERROR:
            cur.execute("SELECT set_config('enable_nestloop', %s, true)", (previous,))


@contextlib.contextmanager
def qualified_names(cur):
    """Catalog reads with an empty search_path (transaction-local), then put it back: type names
    and deparsed expressions come out schema-qualified, so they compare equal on both servers
    whatever each session's search_path is, and replay exactly as DDL."""
    cur.execute("SELECT current_setting('search_path')")
    previous = cur.fetchone()[0]
    cur.execute("SELECT set_config('search_path', '', true)")
    yield
    # Not on error: the transaction is aborted then and will be rolled back anyway.
    cur.execute("SELECT set_config('search_path', %s, true)", (previous,))
