"""The sync's pure guards: SYNC_TARGET_ALLOWLIST parsing and matching, loopback addresses,
"same database" identity and the lock table's arithmetic (no database)."""

from __future__ import annotations

import pytest

from dbsync.catalog.privileges import describe_lock_table, lock_backends, lock_table_entries
from dbsync.errors import DbSyncError
from dbsync.safety import ServerIdentity, is_loopback, parse_allowlist, same_database, target_allowed
from dbsync.sync.guards import LOCK_HEADROOM, locks_per_transaction_for


@pytest.mark.parametrize("text", [None, "", "   ", ",", " , ,"])
def test_unset_or_empty_allowlist_is_none(text):
    assert parse_allowlist(text) is None


def test_allowlist_entries_host_lowercased_dbname_kept():
    assert parse_allowlist(" Staging-DB.Example.internal/Books , scratch,db.internal/a/b ") == [
        ("staging-db.example.internal", "Books"), (None, "scratch"), ("db.internal/a", "b")]


@pytest.mark.parametrize("entry", ["/books", "staging.internal/", "/"])
def test_allowlist_entry_with_an_empty_side_is_refused(entry):
    with pytest.raises(DbSyncError, match=f"SYNC_TARGET_ALLOWLIST entry '{entry}' is not host/dbname or dbname"):
        parse_allowlist(f"ok_db, {entry}")


@pytest.mark.parametrize("address, loopback", [
    (None, True),  # a Unix socket
    ("127.0.0.1", True), ("127.10.0.3", True), ("::1", True), ("127.0.0.1/32", True),
    ("10.0.0.5", False), ("192.168.1.1", False), ("::ffff:10.0.0.5", False), ("2001:db8::1", False),
    ("", False), ("localhost", False), ("not an address", False),
])
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_without_an_allowlist_only_a_local_server_is_allowed():
    assert target_allowed(None, host="/tmp", dbname="staging", server_addr=None)
    assert target_allowed(None, host="127.0.0.1", dbname="staging", server_addr="127.0.0.1")
    # The name the client used does not matter, the address the server reports does.
    assert not target_allowed(None, host="localhost", dbname="staging", server_addr="10.1.2.3")


def test_allowlist_matches_dbname_and_host_when_given():
    allow = parse_allowlist("staging.internal/books, scratch")
    assert target_allowed(allow, host="staging.internal", dbname="books", server_addr="10.0.0.9")
    assert target_allowed(allow, host="STAGING.Internal", dbname="books", server_addr="10.0.0.9")
    assert not target_allowed(allow, host="prod.internal", dbname="books", server_addr="10.0.0.9")
    assert not target_allowed(allow, host="staging.internal", dbname="Books", server_addr="10.0.0.9")
    assert target_allowed(allow, host="anywhere", dbname="scratch", server_addr="10.0.0.9")  # dbname alone: any host
    assert not target_allowed(allow, host=None, dbname="books", server_addr="10.0.0.9")
    # With a list, a local server is not allowed for being local.
    assert not target_allowed(allow, host="/tmp", dbname="other", server_addr=None)


def test_same_database_needs_same_start_time_and_name_and_system_identifier():
    prod = ServerIdentity(7001, "2026-11-25 03:00:00+00", "books")
    assert same_database(prod, ServerIdentity(7001, "2026-11-25 03:00:00+00", "books"))
    # A snapshot restored from prod: same system identifier, another start time.
    assert not same_database(prod, ServerIdentity(7001, "2026-11-26 09:00:00+00", "books"))
    assert not same_database(prod, ServerIdentity(7001, "2026-11-25 03:00:00+00", "staging"))
    assert not same_database(prod, ServerIdentity(8002, "2026-11-25 03:00:00+00", "books"))


def test_an_unreadable_system_identifier_errs_towards_same():
    a = ServerIdentity(None, "2026-11-25 03:00:00+00", "books")
    assert same_database(a, ServerIdentity(7001, "2026-11-25 03:00:00+00", "books"))
    assert same_database(ServerIdentity(7001, "2026-11-25 03:00:00+00", "books"), a)
    assert not same_database(a, ServerIdentity(None, "2026-11-25 03:00:01+00", "books"))


# The shared lock table: max_locks_per_transaction × (every backend + prepared transactions).
DEFAULTS = {"max_locks_per_transaction": 64, "max_connections": 100, "autovacuum_worker_slots": 16,
            "autovacuum_max_workers": 3, "max_worker_processes": 8, "max_wal_senders": 10,
            "max_prepared_transactions": 0}
PG18, PG17 = 180000, 170006


def test_the_lock_table_counts_every_backend_not_only_connections():
    # PostgreSQL 18: autovacuum_worker_slots, then the autovacuum launcher and the slot sync worker.
    assert lock_backends(DEFAULTS, PG18) == 100 + 16 + 8 + 10 + 2 == 136
    assert lock_table_entries(DEFAULTS, PG18) == 64 * 136 == 8704
    # Before 18: autovacuum_max_workers and its launcher.
    assert lock_backends(DEFAULTS, PG17) == 100 + 3 + 1 + 8 + 10 == 122
    assert lock_table_entries(DEFAULTS, PG17) == 64 * 122
    assert lock_table_entries(dict(DEFAULTS, max_prepared_transactions=5), PG18) == 64 * (136 + 5)


def test_the_lock_table_on_an_rds_db_t3_small():
    """max_connections LEAST(DBInstanceClassMemory/9531392, 5000) = 198, max_wal_senders 35 (RDS 16+),
    autovacuum_worker_slots 16 (RDS 18): room for GitLab's ~11,400 locks, which 64 × 198 barely had."""
    rds = dict(DEFAULTS, max_connections=198, max_wal_senders=35)
    assert lock_table_entries(rds, PG17) == 64 * (198 + 3 + 1 + 8 + 35) == 15_680
    assert lock_table_entries(rds, PG18) == 64 * (198 + 16 + 2 + 8 + 35) == 16_576
    assert 11_400 < LOCK_HEADROOM * lock_table_entries(rds, PG17)


def test_the_refusal_names_the_smallest_setting_that_fits():
    capacity = lock_table_entries(DEFAULTS, PG18)  # 8704
    n = locks_per_transaction_for(11_400, capacity, 64)
    assert n == 94

    def fits(per_transaction: int) -> bool:
        return 11_400 <= LOCK_HEADROOM * lock_table_entries(dict(DEFAULTS, max_locks_per_transaction=per_transaction),
                                                            PG18)

    assert fits(n) and not fits(n - 1)


def test_the_lock_table_is_described_by_the_settings_it_comes_from():
    assert describe_lock_table(DEFAULTS, PG18) == (
        "max_locks_per_transaction=64 × (max_connections=100 + autovacuum_worker_slots=16 + max_worker_processes=8"
        " + max_wal_senders=10 + max_prepared_transactions=0 + 2)")
    assert "autovacuum_max_workers=3" in describe_lock_table(DEFAULTS, PG17)
