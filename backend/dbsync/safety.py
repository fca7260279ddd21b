"""What keeps every write away from prod, for each command that writes (the sync, `mask`): the
target must be allow-listed as actually connected, must not be the source reached another way,
and only one db-sync may write to it at a time. Each refuses with a one-line DbSyncError.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import psycopg2

from dbsync.errors import DbSyncError

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


def check_target_allowed(target_conn, allowlist_text: str | None) -> None:
    """Refuse unless the target, as actually connected, is allow-listed (or local when no list:
    `allowlist_text` is SYNC_TARGET_ALLOWLIST's value, None when unset)."""
    allowlist = parse_allowlist(allowlist_text)
    with target_conn.cursor() as cur:
        cur.execute("SELECT host(inet_server_addr()), current_database()")
        server_addr, dbname = cur.fetchone()
    host = target_conn.info.host
    if target_allowed(allowlist, host=host, dbname=dbname, server_addr=server_addr):
        return
    where = f"{'a Unix socket' if host.startswith('/') else host}/{dbname}"
    entry = dbname if host.startswith("/") else f"{host}/{dbname}"
    if allowlist is None:
        raise DbSyncError(f"target {where} is not local and SYNC_TARGET_ALLOWLIST is not set;"
                          f" to allow it, set SYNC_TARGET_ALLOWLIST={entry}")
    raise DbSyncError(f"target {where} is not in SYNC_TARGET_ALLOWLIST; refusing to write to it — to allow it,"
                      f" add the entry {entry} (the list is comma-separated host/dbname or dbname)")


# -- one sync at a time ---------------------------------------------------------------------------

def take_sync_lock(target_conn) -> None:
    """Transaction-level advisory lock: released by the commit or rollback, even on a crash."""
    with target_conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (SYNC_LOCK_KEY,))
        if not cur.fetchone()[0]:
            raise DbSyncError("another sync is running against this target (it holds the db-sync advisory"
                              " lock); try again when it has finished")
