"""Finding what changed without hashing every row: what the last sync saw is recorded on staging.

After every sync, staging's table `dbsync.sync_state` keeps, per synced table, the xmin of the
source snapshot the sync read (every prod row written by a transaction older than that was in
it), the xid of the sync's own transaction on staging, and a fingerprint of how the table was
copied (columns, masking expressions, the key's digest). The next incremental sync, if all of
that still holds (same source cluster and database, xids moving forward, the same fingerprint),
needs per table only:
- prod's rows written since that snapshot (`age(xmin) <= age(<recorded xmin>)`: a scan with a
  cheap filter; frozen rows count as old), and its keys — of the key ranges whose summaries
  differ where the key can be cut (dbsync.sync.ranges), else all of them — and
- staging's rows written by transactions that had not ended when the last sync committed (the
  xmin of a snapshot it took just before its COMMIT), other than the sync's own: a writer that
  waited on the sync's locks writes after it, whatever its xid.
Keys prod lacks are deleted; keys staging lacks or wrote to are fetched from prod by key; prod's
recent rows are upserted. An over-estimate (a row in a transaction that was running at the
snapshot) only costs a row fetched again. Anything unusual falls back to comparing digests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from dbsync.errors import pg_message, sqlstate
from dbsync.masking.key import MaskingKey
from dbsync.safety import server_identity
from dbsync.sync.units import Unit

STATE_SCHEMA, STATE_TABLE = "dbsync", "sync_state"
STATE = sql.SQL("{}.{}").format(sql.Identifier(STATE_SCHEMA), sql.Identifier(STATE_TABLE))
# Beyond this many transactions since the last sync, age() arithmetic (32 bits) is no longer safe.
MAX_XID_DISTANCE = 1_000_000_000


@dataclass
class LastSync:
    source_xmin: int
    target_xid: int
    target_xmin: int
    fingerprint: str


def fingerprint(source, unit: Unit, key: MaskingKey | None) -> str:
    """How the table travels: its COPY statement (columns, masking expressions, where) and the
    masking key's digest. A change of any of them invalidates the recorded state."""
    text = unit.copy_out().as_string(source) + "|" + (hashlib.sha256(key.value).hexdigest() if key else "")
    return hashlib.sha256(text.encode()).hexdigest()


def source_identity(source) -> tuple[str, str]:
    """(system identifier, database) of the source, as the same-database guard reads them."""
    ident = server_identity(source)
    return ("" if ident.system_identifier is None else str(ident.system_identifier)), ident.database


def read_state(source, target) -> dict[str, LastSync]:
    """label → the last sync's record, where one is usable; {} when there is none."""
    with target.cursor() as cur:
        # A record from before target_xmin existed is not used (write_state adds the column).
        cur.execute("SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'target_xmin'",
                    (f"{STATE_SCHEMA}.{STATE_TABLE}",))
        if cur.fetchone() is None:
            return {}
        sysid, database = source_identity(source)
        cur.execute(sql.SQL("SELECT table_name, source_xmin::text, target_xid::text, target_xmin::text, fingerprint"
                            " FROM {} WHERE source_system_id = %s AND source_database = %s"
                            " AND target_xmin IS NOT NULL").format(STATE), (sysid, database))
        rows = cur.fetchall()
    # Both servers' xids, as far as age() can tell them apart.
    source_now, target_now = _next_xid(source), _next_xid(target)
    return {label: LastSync(int(x), int(t), int(tx), f) for label, x, t, tx, f in rows
            if 0 <= source_now - int(x) < MAX_XID_DISTANCE and 0 <= target_now - int(tx) < MAX_XID_DISTANCE}


def _next_xid(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
        return int(cur.fetchone()[0])


def write_state(source, target, units: list[Unit], *, key: MaskingKey | None) -> str | None:
    """Record what this sync saw, in its own transaction (it commits with the data or not at all).
    Every sync writes it, a full one too, creating the `dbsync` schema the first time: the next
    incremental sync then finds changes since this one, and `verify` attributes differences with
    it. Where the record cannot be written (the target role may not create the schema, say) the
    data still commits: the return value says why, for the result's warnings, and the next
    incremental sync compares digests."""
    sysid, database = source_identity(source)
    with source.cursor() as cur:
        cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        source_xmin = cur.fetchone()[0]
    with target.cursor() as cur:
        cur.execute("SAVEPOINT dbsync_state")
        try:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(STATE_SCHEMA)))
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (table_name text PRIMARY KEY, source_system_id text,"
                                " source_database text, source_xmin xid8, target_xid xid8, fingerprint text,"
                                " synced_at timestamptz)").format(STATE))
            cur.execute(_ADD_TARGET_XMIN.format(STATE))
            for unit in units:
                cur.execute(_RECORD.format(STATE),
                            (unit.label, sysid, database, source_xmin, fingerprint(source, unit, key)))
            cur.execute("RELEASE SAVEPOINT dbsync_state")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT dbsync_state")
            return (f"the sync's record ({STATE_SCHEMA}.{STATE_TABLE}) was not written: {pg_message(exc)}"
                    f" [SQLSTATE {sqlstate(exc)}]; the next incremental sync compares every row")
    return None


def recorded_tables(target) -> dict[str, tuple[str, str, str]]:
    """Every table the record names → (source system id, source database, fingerprint), usable
    or not; {} when there is no record (verify checks it against what is there)."""
    with target.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{STATE_SCHEMA}.{STATE_TABLE}",))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute(sql.SQL("SELECT table_name, source_system_id, source_database, fingerprint FROM {}").format(STATE))
        return {label: (sysid, database, fp) for label, sysid, database, fp in cur.fetchall()}


VERIFIED = sql.SQL("{}.{}").format(sql.Identifier(STATE_SCHEMA), sql.Identifier("sync_verified"))


def write_verified(target, *, tables: int, rows: int, key_ranges: int) -> str | None:
    """What `sync --verify` proved, in the sync's transaction beside the record (a failed verify
    rolls the sync back, so only passes are recorded); like the record, a warning where it cannot
    be written."""
    with target.cursor() as cur:
        cur.execute("SAVEPOINT dbsync_verified")
        try:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(STATE_SCHEMA)))
            cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (verified_at timestamptz, target_xid xid8,"
                                " tables integer, rows bigint, key_ranges bigint)").format(VERIFIED))
            cur.execute(sql.SQL("INSERT INTO {} VALUES (now(), pg_current_xact_id(), %s, %s, %s)").format(VERIFIED),
                        (tables, rows, key_ranges))
            cur.execute("RELEASE SAVEPOINT dbsync_verified")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT dbsync_verified")
            return f"the verify's result ({STATE_SCHEMA}.sync_verified) was not written: {pg_message(exc)}"
    return None


# Added after the first release of the record.
_ADD_TARGET_XMIN = sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS target_xmin xid8")
_RECORD = sql.SQL("INSERT INTO {} (table_name, source_system_id, source_database, source_xmin, target_xid,"
                  " target_xmin, fingerprint, synced_at)"
                  " VALUES (%s, %s, %s, %s::xid8, pg_current_xact_id(), pg_snapshot_xmin(pg_current_snapshot()),"
                  " %s, now())"
                  " ON CONFLICT (table_name) DO UPDATE SET source_system_id = excluded.source_system_id,"
                  " source_database = excluded.source_database, source_xmin = excluded.source_xmin,"
                  " target_xid = excluded.target_xid, target_xmin = excluded.target_xmin,"
                  " fingerprint = excluded.fingerprint, synced_at = excluded.synced_at")


def _xid32(xid8: int) -> sql.Composable:
    return sql.SQL("{}::xid").format(sql.Literal(str(xid8 % 2**32)))


_XMIN = sql.SQL("xmin")


def recent_source_filter(last: LastSync, xmin: sql.Composable = _XMIN) -> sql.Composable:
    """Prod rows (`xmin` their xmin) written by a transaction at or after the recorded snapshot's
    xmin."""
    return sql.SQL("age({}) <= age({})").format(xmin, _xid32(last.source_xmin))


def recent_target_filter(last: LastSync, xmin: sql.Composable) -> sql.Composable:
    """Staging rows (`xmin` their xmin) written by someone else than the last sync, by a
    transaction that had not ended when that sync committed."""
    return sql.SQL("(age({x}) <= age({since}) AND {x} <> {own})").format(
        x=xmin, since=_xid32(last.target_xmin), own=_xid32(last.target_xid))
