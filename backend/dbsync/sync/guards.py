"""Checks the sync runs before it writes anything; each refuses with a one-line DbSyncError.

They exist so that the sync never dies half-way on a limit it could have seen coming (lock table,
ownership, row-level security, foreign keys from tables it does not copy). What keeps any write
away from prod — the same database reached another way, a target nobody allow-listed, a second
sync — is dbsync.safety, which `mask` shares.
"""

from __future__ import annotations

import math

from dbsync.catalog import constraints, privileges
from dbsync.errors import DbSyncError, pg_message, shown_name

# -- lock table --------------------------------------------------------------------------------

# Keep some of the shared lock table for everyone else using the server meanwhile.
LOCK_HEADROOM = 0.9


def locks_per_transaction_for(needed: int, capacity: int, per_transaction: int) -> int:
    """The smallest max_locks_per_transaction whose lock table, sized in proportion to it, holds
    `needed` locks within LOCK_HEADROOM."""
    return math.ceil(needed * per_transaction / (capacity * LOCK_HEADROOM))


def check_lock_budget(conn, table_oids: list[int], *, side: str, extra: int = 0) -> float:
    """Refuse a sync whose one transaction would hold more locks than the `side`'s lock table allows
    (sized by all the server's backends, dbsync.catalog.privileges.lock_table_entries). Returns the
    share of the allowance it needs."""
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
    return needed / (capacity * LOCK_HEADROOM)


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


# -- reading the source ---------------------------------------------------------------------------

def check_source_select(source_conn, columns: list[tuple[int, str]]) -> None:
    """The source role must read every column the sync copies (table oid, column): refused up
    front, naming the role and every table, rather than at the first such table mid-copy."""
    with source_conn.cursor() as cur:
        tables = privileges.lacking_select(cur, columns)
        if not tables:
            return
        me = privileges.current_user(cur)
    raise DbSyncError(f"the source role {me} may not SELECT from {len(tables)} table(s) the sync copies:"
                      f" {', '.join(tables)}; run on prod GRANT SELECT ON {', '.join(tables)} TO {shown_name(me)}"
                      " (or leave them out with --table); nothing was written")


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

def check_no_outside_references(source_conn, source_oids, target_conn, target_oids,
                                ignored: tuple[list[int], list[int]] = ([], [])) -> None:
    """`ignored`: (source, target) oids of the tables whose keys the drift policy handles."""
    found = []
    for side, conn, oids, skip in (("source", source_conn, source_oids, ignored[0]),
                                   ("target", target_conn, target_oids, ignored[1])):
        with conn.cursor() as cur:
            found += [f"{ref} on the {side}" for ref in constraints.outside_references(cur, oids, skip)]
    if found:
        raise DbSyncError("tables outside the synced set have foreign keys into it: " + "; ".join(found)
                          + " — add those tables with --table (or sync everything)")


def lock_timeout_message(exc, *, side: str) -> str:
    """What a lock_timeout hit (SQLSTATE 55P03) on the `side` ("source" or "target") session means:
    the sync waited LOCK_TIMEOUT for a busy table."""
    return (f"timed out waiting for a lock on the {side} ({pg_message(exc)}); another session is using"
            " the tables — raise LOCK_TIMEOUT or retry when it is idle")

