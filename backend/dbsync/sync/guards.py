"""Checks the sync runs before it writes anything; each refuses with a one-line DbSyncError.

They exist so that the sync can never write to prod (same database reached another way, a target
nobody allow-listed), never fight another sync, and never die half-way on a limit it could have
seen coming (lock table, ownership, foreign keys from tables it does not copy).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

import psycopg2

from dbsync.catalog import constraints, privileges
from dbsync.errors import DbSyncError, pg_message
from dbsync.settings import SyncSettings

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
        allowlist_text = SyncSettings.load().sync_target_allowlist
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

# Keep some of the shared lock table for everyone else using the server meanwhile.
LOCK_HEADROOM = 0.9


def locks_per_transaction_for(needed: int, capacity: int, per_transaction: int) -> int:
    """The smallest max_locks_per_transaction whose lock table, sized in proportion to it, holds
    `needed` locks within LOCK_HEADROOM."""
    return math.ceil(needed * per_transaction / (capacity * LOCK_HEADROOM))


def check_lock_budget(conn, table_oids: list[int], *, side: str, extra: int = 0) -> int:
    """Refuse a sync whose one transaction would hold more locks than the `side`'s lock table allows
    (sized by all the server's backends, dbsync.catalog.privileges.lock_table_entries)."""
    with conn.cursor() as cur:
        needed = privileges.locks_needed(cur, table_oids, writing=side == "target") + extra
        capacity = privileges.lock_capacity(cur)
        how = privileges.lock_settings(cur)
        per_transaction = privileges.lock_table_settings(cur)["max_locks_per_transaction"]
    if needed > capacity * LOCK_HEADROOM:
        raise DbSyncError(
            f"the sync would hold about {needed} locks on the {side} in one transaction (tables, indexes,"
            f" sequences), more than its lock table holds: {how} = {capacity}; raise max_locks_per_transaction"
            f" on the {side} to at least {locks_per_transaction_for(needed, capacity, per_transaction)}"
            " (a restart is needed) or sync fewer tables with --table")
    return needed


# -- ownership ---------------------------------------------------------------------------------

def check_ownership(target_conn, table_oids: list[int], sequence_oids: list[int]) -> None:
    """The sync truncates and alters the target's tables and sequences: its role must own them
    (or be a member of the owning role)."""
    with target_conn.cursor() as cur:
        rows = privileges.not_ours(cur, table_oids, sequence_oids)
        if not rows:
            return
        me = privileges.current_user(cur)
    shown = ", ".join(f"{kind} {name} (owner {owner})" for kind, name, owner in rows[:10])
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    raise DbSyncError(f"the target role {me} does not own {shown}{more}; the sync truncates and alters them,"
                      " so connect as their owner (or a member of the owning role)")


# -- row-level security -------------------------------------------------------------------------

def check_row_security(conn, table_oids: list[int], *, side: str) -> None:
    """Both sessions run with row_security = off (as pg_dump does), so a policy that applies makes
    the server raise instead of silently filtering rows; refuse up front, naming the tables,
    rather than half-way through the copy."""
    with conn.cursor() as cur:
        names = privileges.row_security_applies(cur, table_oids)
        if not names:
            return
        me = privileges.current_user(cur)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    if side == "source":
        raise DbSyncError(f"row-level security policies on {shown} apply to the source role {me}, so it would"
                          " read only the rows they show it: the source role must be allowed to bypass RLS"
                          " (the tables' owner without FORCE ROW LEVEL SECURITY, or a role with BYPASSRLS);"
                          " nothing was written")
    raise DbSyncError(f"row-level security policies on {shown} apply to the target role {me} (FORCE ROW LEVEL"
                      " SECURITY), so it cannot load and count their rows: give it BYPASSRLS or ALTER TABLE"
                      " … NO FORCE ROW LEVEL SECURITY; nothing was written")


def row_security_hint(exc) -> str:
    """The server's error when a policy would have applied under row_security = off, explained."""
    text = pg_message(exc)
    if getattr(exc, "pgcode", None) == "42501" and "row-level security" in text:
        return text + " (the role must be allowed to bypass RLS: the table's owner, or BYPASSRLS)"
    return text


# -- foreign keys from outside the synced set ---------------------------------------------------

def check_no_outside_references(source_conn, source_oids, target_conn, target_oids) -> None:
    found = []
    for side, conn, oids in (("source", source_conn, source_oids), ("target", target_conn, target_oids)):
        with conn.cursor() as cur:
            found += [f"{ref} on the {side}" for ref in constraints.outside_references(cur, oids)]
    if found:
        raise DbSyncError("tables outside the synced set have foreign keys into it: " + "; ".join(found)
                          + " — add those tables with --table (or sync everything)")


def lock_timeout_message(exc, *, side: str) -> str:
    """What a lock_timeout hit (SQLSTATE 55P03) on the `side` ("source" or "target") session means:
    the sync waited LOCK_TIMEOUT for a busy table."""
    return (f"timed out waiting for a lock on the {side} ({pg_message(exc)}); another session is using"
            " the tables — raise LOCK_TIMEOUT or retry when it is idle")

