"""Checks the sync runs before it writes anything; each refuses with a one-line DbSyncError.

They exist so that the sync can never write to prod (same database reached another way, a target
nobody allow-listed), never fight another sync, and never die half-way on a limit it could have
seen coming (lock table, ownership, foreign keys from tables it does not copy).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from dbsync import catalog
from dbsync.errors import DbSyncError, pg_message

# pg_try_advisory_xact_lock key shared by every db-sync process ("dbsync" in ASCII). Advisory
# locks are per database, so syncs into different databases of one cluster do not collide.
SYNC_LOCK_KEY = 0x646273796E63


@dataclass(frozen=True)
class ServerIdentity:
    system_identifier: int | None  # None when pg_control_system() is not allowed for the role
    start_time: str
    database: str


def server_identity(conn) -> ServerIdentity:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_postmaster_start_time()::text, current_database()")
        start, db = cur.fetchone()
        try:
            cur.execute("SAVEPOINT dbsync_identity")
            cur.execute("SELECT system_identifier FROM pg_control_system()")
            sysid = cur.fetchone()[0]
            cur.execute("RELEASE SAVEPOINT dbsync_identity")
        except psycopg2.Error:  # permission denied on a locked-down managed server
            cur.execute("ROLLBACK TO SAVEPOINT dbsync_identity")
            sysid = None
    return ServerIdentity(sysid, start, db)


def same_database(a: ServerIdentity, b: ServerIdentity) -> bool:
    """One cluster instance and one database. A restored snapshot of prod shares the system
    identifier but not the start time, and stays allowed. When either side cannot read its
    system identifier, start time and name alone decide (erring towards refusing)."""
    if a.start_time != b.start_time or a.database != b.database:
        return False
    if a.system_identifier is None or b.system_identifier is None:
        return True
    return a.system_identifier == b.system_identifier


def check_not_same_database(source_conn, target_conn) -> None:
    s, t = server_identity(source_conn), server_identity(target_conn)
    if same_database(s, t):
        raise DbSyncError(f"source and target are the same database ({t.database} on one server);"
                          " refusing to sync a database onto itself")


# -- the target allow-list ----------------------------------------------------------------------

def parse_allowlist(text: str | None) -> list[tuple[str | None, str]] | None:
    """SYNC_TARGET_ALLOWLIST: comma-separated `host/dbname` or `dbname`; None when unset/empty."""
    if text is None or not text.strip():
        return None
    entries = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        host, sep, db = item.rpartition("/")
        if sep and (not host or not db):
            raise DbSyncError(f"SYNC_TARGET_ALLOWLIST entry {item!r} is not host/dbname or dbname")
        entries.append((host.lower() if sep else None, db))
    return entries or None


def is_loopback(address: str | None) -> bool:
    """A server address as inet_server_addr() reports it: None means a Unix socket."""
    if address is None:
        return True
    try:
        return ipaddress.ip_interface(address).ip.is_loopback
    except ValueError:
        return False


def target_allowed(allowlist: list[tuple[str | None, str]] | None, *, host: str | None,
                   dbname: str, server_addr: str | None) -> bool:
    if allowlist is None:
        return is_loopback(server_addr)
    host = (host or "").lower()
    for entry_host, entry_db in allowlist:
        if entry_db == dbname and (entry_host is None or entry_host == host):
            return True
    return False


def check_target_allowed(target_conn, allowlist_text: str | None = None) -> None:
    """Refuse unless the target, as actually connected, is allow-listed (or local when no list)."""
    if allowlist_text is None:
        allowlist_text = os.environ.get("SYNC_TARGET_ALLOWLIST")
    allowlist = parse_allowlist(allowlist_text)
    with target_conn.cursor() as cur:
        cur.execute("SELECT host(inet_server_addr()), current_database()")
        server_addr, dbname = cur.fetchone()
    host = target_conn.info.host
    if target_allowed(allowlist, host=host, dbname=dbname, server_addr=server_addr):
        return
    where = f"{'a Unix socket' if host.startswith('/') else host}/{dbname}"
    if allowlist is None:
        raise DbSyncError(f"target {where} is not local and SYNC_TARGET_ALLOWLIST is not set;"
                          " list the target there (host/dbname or dbname) to allow it")
    raise DbSyncError(f"target {where} is not in SYNC_TARGET_ALLOWLIST; refusing to write to it")


# -- one sync at a time ---------------------------------------------------------------------------

def take_sync_lock(target_conn) -> None:
    """Transaction-level advisory lock: released by the commit or rollback, even on a crash."""
    with target_conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (SYNC_LOCK_KEY,))
        if not cur.fetchone()[0]:
            raise DbSyncError("another sync is running against this target (it holds the db-sync advisory"
                              " lock); try again when it has finished")


# -- lock table --------------------------------------------------------------------------------

def lock_capacity(conn) -> tuple[int, str]:
    """The lock table's size (catalog.lock_capacity) and the settings it comes from, for the message."""
    with conn.cursor() as cur:
        capacity = catalog.lock_capacity(cur)
        cur.execute("SELECT current_setting('max_locks_per_transaction'), current_setting('max_connections'),"
                    " current_setting('max_prepared_transactions')")
        per_tx, conns, prepared = cur.fetchone()
    return capacity, (f"max_locks_per_transaction={per_tx} × (max_connections={conns}"
                      f" + max_prepared_transactions={prepared})")


# `rels`: the tables given as an oid[] parameter plus, recursively, their partitions — every
# relation a sync of those tables truncates and loads. Composed into the queries below and into
# setaside's trigger and foreign-key queries, so all of them agree on that set.
WITH_RELS = sql.SQL("""
WITH RECURSIVE rels(oid) AS (
    SELECT unnest(%s::oid[])
  UNION
    SELECT i.inhrelid FROM pg_inherits i JOIN rels r ON i.inhparent = r.oid
    JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relispartition
)""")


# Everything one transaction locks when it truncates, loads and alters these relations: each
# relation, its partitions, their indexes, TOAST tables and TOAST indexes, and the sequences the
# columns use (the sequence-repair step locks them too).
_TARGET_LOCKS_SQL = sql.SQL("""{with_rels}
SELECT (SELECT count(*) FROM rels)
     + (SELECT count(*) FROM pg_index x JOIN rels r ON x.indrelid = r.oid)
     + (SELECT 2 * count(*) FROM pg_class c JOIN rels r ON c.oid = r.oid WHERE c.reltoastrelid <> 0)
     + (SELECT count(DISTINCT d.objid) FROM pg_depend d JOIN rels r ON d.refobjid = r.oid
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' WHERE d.classid = 'pg_class'::regclass)
""").format(with_rels=WITH_RELS)

_SOURCE_LOCKS_SQL = sql.SQL("""{with_rels}
SELECT (SELECT count(*) FROM rels)
     + (SELECT count(*) FROM pg_index x JOIN rels r ON x.indrelid = r.oid
        JOIN pg_class c ON c.oid = r.oid WHERE c.relispartition OR c.relkind = 'p')
""").format(with_rels=WITH_RELS)

# Keep some of the shared lock table for everyone else using the server meanwhile.
LOCK_HEADROOM = 0.9


def estimate_locks(conn, table_oids: list[int], *, side: str) -> int:
    with conn.cursor() as cur:
        cur.execute(_TARGET_LOCKS_SQL if side == "target" else _SOURCE_LOCKS_SQL, (table_oids,))
        return int(cur.fetchone()[0])


def check_lock_budget(conn, table_oids: list[int], *, side: str, extra: int = 0) -> int:
    needed = estimate_locks(conn, table_oids, side=side) + extra
    capacity, how = lock_capacity(conn)
    if needed > capacity * LOCK_HEADROOM:
        raise DbSyncError(
            f"the sync would hold about {needed} locks on the {side} in one transaction (tables, indexes,"
            f" sequences), more than its lock table holds: {how} = {capacity}; raise"
            f" max_locks_per_transaction on the {side} (a restart is needed) or sync fewer tables with --table")
    return needed


# -- ownership ---------------------------------------------------------------------------------

_NOT_OWNED_SQL = sql.SQL("""{with_rels}, objs AS (
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


def check_ownership(target_conn, table_oids: list[int], sequence_oids: list[int]) -> None:
    """The sync truncates and alters the target's tables and sequences: its role must own them
    (or be a member of the owning role)."""
    with target_conn.cursor() as cur:
        cur.execute(_NOT_OWNED_SQL, (table_oids, sequence_oids))
        rows = cur.fetchall()
        if not rows:
            return
        cur.execute("SELECT current_user")
        me = cur.fetchone()[0]
    shown = ", ".join(f"{kind} {name} (owner {owner})" for kind, name, owner in rows[:10])
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    raise DbSyncError(f"the target role {me} does not own {shown}{more}; the sync truncates and alters them,"
                      " so connect as their owner (or a member of the owning role)")


# -- row-level security -------------------------------------------------------------------------

# Tables whose policies would apply to the current role (PostgreSQL's check_enable_rls): RLS on,
# the role neither superuser nor BYPASSRLS, and either not the owner or the owner under FORCE.
_RLS_APPLIES_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relforcerowsecurity, current_user
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%s) AND c.relrowsecurity
  AND NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = current_user AND (r.rolsuper OR r.rolbypassrls))
  AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
ORDER BY 1
"""


def check_row_security(conn, table_oids: list[int], *, side: str) -> None:
    """Both sessions run with row_security = off (as pg_dump does), so a policy that applies makes
    the server raise instead of silently filtering rows; refuse up front, naming the tables,
    rather than half-way through the copy."""
    with conn.cursor() as cur:
        cur.execute(_RLS_APPLIES_SQL, (table_oids,))
        rows = cur.fetchall()
    if not rows:
        return
    names = ", ".join(name for name, _, _ in rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
    me = rows[0][2]
    if side == "source":
        raise DbSyncError(f"row-level security policies on {names} apply to the source role {me}, so it would"
                          " read only the rows they show it: the source role must be allowed to bypass RLS"
                          " (the tables' owner without FORCE ROW LEVEL SECURITY, or a role with BYPASSRLS);"
                          " nothing was written")
    raise DbSyncError(f"row-level security policies on {names} apply to the target role {me} (FORCE ROW LEVEL"
                      " SECURITY), so it cannot load and count their rows: give it BYPASSRLS or ALTER TABLE"
                      " … NO FORCE ROW LEVEL SECURITY; nothing was written")


def row_security_hint(exc) -> str:
    """The server's error when a policy would have applied under row_security = off, explained."""
    text = pg_message(exc)
    if getattr(exc, "pgcode", None) == "42501" and "row-level security" in text:
        return text + " (the role must be allowed to bypass RLS: the table's owner, or BYPASSRLS)"
    return text


# -- foreign keys from outside the synced set ---------------------------------------------------

_OUTSIDE_FKS_SQL = sql.SQL("""{with_rels}
SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(con.conname),
       quote_ident(rn.nspname) || '.' || quote_ident(r.relname)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE con.contype = 'f' AND con.confrelid IN (SELECT oid FROM rels)
  AND con.conrelid NOT IN (SELECT oid FROM rels)
ORDER BY 1, 2
""").format(with_rels=WITH_RELS)


def outside_references(conn, table_oids: list[int]) -> list[str]:
    """Foreign keys from tables outside the set into it, as `referencing (constraint) → referenced`."""
    with conn.cursor() as cur:
        cur.execute(_OUTSIDE_FKS_SQL, (table_oids,))
        return [f"{a} ({con}) references {b}" for a, con, b in cur.fetchall()]


def check_no_outside_references(source_conn, source_oids, target_conn, target_oids) -> None:
    found = []
    for side, conn, oids in (("source", source_conn, source_oids), ("target", target_conn, target_oids)):
        for ref in outside_references(conn, oids):
            found.append(f"{ref} on the {side}")
    if found:
        raise DbSyncError("tables outside the synced set have foreign keys into it: " + "; ".join(found)
                          + " — add those tables with --table (or sync everything)")


def check_lock_timeout_reached(exc, *, side: str) -> str | None:
    """A lock_timeout hit on the `side` ("source" or "target") session, explained (the sync waited
    LOCK_TIMEOUT for a busy table)."""
    if getattr(exc, "pgcode", None) == "55P03":
        return (f"timed out waiting for a lock on the {side} ({pg_message(exc)}); another session is using"
                " the tables — raise LOCK_TIMEOUT or retry when it is idle")
    return None

