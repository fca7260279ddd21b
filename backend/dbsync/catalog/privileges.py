"""What the current role may do, and how many locks a transaction may hold, read from pg_catalog."""

from __future__ import annotations

from psycopg2 import sql

from dbsync.catalog.query import WITH_RELS

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


def lacking_usage(cur, pairs: list[tuple[str, int]]) -> list[bool]:
    """For each (role, sequence oid): True when the role has no USAGE on the sequence."""
    cur.execute("SELECT NOT has_sequence_privilege(u.role, u.seq, 'USAGE')"
                " FROM unnest(%s::text[], %s::oid[]) WITH ORDINALITY AS u(role, seq, i) ORDER BY u.i",
                ([role for role, _ in pairs], [oid for _, oid in pairs]))
    return [row[0] for row in cur.fetchall()]


def current_user(cur) -> str:
    cur.execute("SELECT current_user")
    return cur.fetchone()[0]


# -- ownership -----------------------------------------------------------------------------------

_NOT_OURS = sql.SQL("""{with_rels}, objs AS (
    SELECT oid FROM rels
  UNION
    SELECT d.objid FROM pg_depend d JOIN rels r ON d.refobjid = r.oid
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' WHERE d.classid = 'pg_class'::regclass
  UNION
    SELECT unnest(%s::oid[])
)
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_get_userbyid(c.relowner)
FROM objs JOIN pg_class c ON c.oid = objs.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT pg_has_role(c.relowner, 'USAGE')
ORDER BY 2
""").format(with_rels=WITH_RELS)


def not_ours(cur, table_oids: list[int], sequence_oids: list[int]) -> list[tuple[str, str, str]]:
    """(kind, name, owner) of each of the tables (with their partitions and sequences) and
    sequences the current role does not own (nor is a member of the owner)."""
    cur.execute(_NOT_OURS, (table_oids, sequence_oids))
    return cur.fetchall()


# -- row-level security --------------------------------------------------------------------------

# Tables whose policies would apply to the current role (PostgreSQL's check_enable_rls): RLS on,
# the role neither superuser nor BYPASSRLS, and either not the owner or the owner under FORCE.
# (table, column) pairs the current role may not SELECT: a table-level grant covers every
# column, a column grant only its own.
_LACKING_SELECT = """
SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM unnest(%s::oid[], %s::text[]) AS p(oid, col)
JOIN pg_class c ON c.oid = p.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT has_column_privilege(p.oid, p.col, 'SELECT')
ORDER BY 1
"""


def lacking_select(cur, columns: list[tuple[int, str]]) -> list[str]:
    """The tables, of these (table oid, column) pairs, with a column the current role may not read."""
    if not columns:
        return []
    cur.execute(_LACKING_SELECT, ([oid for oid, _ in columns], [col for _, col in columns]))
    return [r[0] for r in cur.fetchall()]


_RLS_APPLIES = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%s) AND c.relrowsecurity
  AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = current_user AND (r.rolsuper OR r.rolbypassrls))
  AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
ORDER BY 1
"""


def row_security_applies(cur, table_oids: list[int]) -> list[str]:
    """The tables among these whose row-level security policies apply to the current role."""
    cur.execute(_RLS_APPLIES, (table_oids,))
    return [name for (name,) in cur.fetchall()]


# -- locks ---------------------------------------------------------------------------------------

# The server sizes its shared lock table (lock.c's NLOCKENTS) at max_locks_per_transaction entries
# for each backend that may take locks (postinit.c's MaxBackends) and each prepared transaction.
# From PostgreSQL 18 the autovacuum workers' share is autovacuum_worker_slots, plus two special
# workers (the autovacuum launcher and the slot sync worker); before, autovacuum_max_workers + 1.
WORKER_SLOTS_SINCE = 180000
_LOCK_TABLE_SETTINGS = ("max_locks_per_transaction", "max_connections", "autovacuum_worker_slots",
                        "autovacuum_max_workers", "max_worker_processes", "max_wal_senders",
                        "max_prepared_transactions")


def _autovacuum_backends(settings: dict[str, int], server_version: int) -> tuple[str, int]:
    if server_version >= WORKER_SLOTS_SINCE:
        return "autovacuum_worker_slots", 2
    return "autovacuum_max_workers", 1


def lock_backends(settings: dict[str, int], server_version: int) -> int:
    """MaxBackends: connections, autovacuum workers and their launcher (and from PostgreSQL 18
    the slot sync worker), background workers and WAL senders."""
    autovacuum, special = _autovacuum_backends(settings, server_version)
    return (settings["max_connections"] + settings[autovacuum] + special + settings["max_worker_processes"]
            + settings["max_wal_senders"])


def lock_table_entries(settings: dict[str, int], server_version: int) -> int:
    """Entries of the shared lock table. One transaction may use more than its share, not all."""
    return settings["max_locks_per_transaction"] * (lock_backends(settings, server_version)
                                                     + settings["max_prepared_transactions"])


def describe_lock_table(settings: dict[str, int], server_version: int) -> str:
    autovacuum, special = _autovacuum_backends(settings, server_version)
    backends = " + ".join(f"{name}={settings[name]}" for name in (
        "max_connections", autovacuum, "max_worker_processes", "max_wal_senders", "max_prepared_transactions"))
    return f"max_locks_per_transaction={settings['max_locks_per_transaction']} × ({backends} + {special})"


def lock_table_settings(cur) -> dict[str, int]:
    """The settings the lock table is sized by (one this server does not have is left out)."""
    cur.execute("SELECT name, setting::int FROM pg_settings WHERE name = ANY (%s)", (list(_LOCK_TABLE_SETTINGS),))
    return dict(cur.fetchall())


def lock_capacity(cur) -> int:
    """Entries of this server's shared lock table."""
    return lock_table_entries(lock_table_settings(cur), cur.connection.info.server_version)


def lock_settings(cur) -> str:
    """The settings the lock table's size comes from, for messages."""
    return describe_lock_table(lock_table_settings(cur), cur.connection.info.server_version)


# Everything one transaction locks when it truncates, loads and alters these relations: each
# relation, its partitions, their indexes, TOAST tables and TOAST indexes, and the sequences the
# columns use (the sequence-repair step locks them too).
_WRITE_LOCKS = sql.SQL("""{with_rels}
SELECT (SELECT count(*) FROM rels)
     + (SELECT count(*) FROM pg_index x JOIN rels r ON x.indrelid = r.oid)
     + (SELECT 2 * count(*) FROM pg_class c JOIN rels r ON c.oid = r.oid WHERE c.reltoastrelid <> 0)
     + (SELECT count(DISTINCT d.objid) FROM pg_depend d JOIN rels r ON d.refobjid = r.oid
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' WHERE d.classid = 'pg_class'::regclass)
""").format(with_rels=WITH_RELS)

# Reading locks each relation, and the indexes of partitioned tables and partitions.
_READ_LOCKS = sql.SQL("""{with_rels}
SELECT (SELECT count(*) FROM rels)
     + (SELECT count(*) FROM pg_index x JOIN rels r ON x.indrelid = r.oid
        JOIN pg_class c ON c.oid = r.oid WHERE c.relispartition OR c.relkind = 'p')
""").format(with_rels=WITH_RELS)


def locks_needed(cur, table_oids: list[int], *, writing: bool) -> int:
    """The locks one transaction takes to read (`writing=False`) or to rewrite these tables."""
    cur.execute(_WRITE_LOCKS if writing else _READ_LOCKS, (table_oids,))
    return int(cur.fetchone()[0])
