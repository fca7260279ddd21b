"""The sync's record on staging (dbsync.sync_state): a record that cannot be written does not fail
the sync, but it is never silent — a warning in the result and the SyncWarnings metric."""

from __future__ import annotations

from dbsync import metrics
from dbsync.sync import sync_databases
from tests.support.db import execute, query


def test_a_record_that_cannot_be_written_is_a_warning_not_a_silence(prod_and_staging):
    prod, staging = prod_and_staging
    # Someone else's table where the record goes: the sync's INSERT into it fails.
    execute(staging, "CREATE SCHEMA dbsync", "CREATE TABLE dbsync.sync_state (table_name int PRIMARY KEY)")
    execute(prod, "UPDATE books SET title = 'after' WHERE id = 1")
    result = sync_databases(prod, staging, incremental=True)
    (warning,) = result["warnings"]
    assert "dbsync.sync_state" in warning and "was not written" in warning and "SQLSTATE 42703" in warning
    assert query(staging, "SELECT title FROM books WHERE id = 1") == [("after",)]  # the data committed
    assert metrics.sync_values(result, refresh=True)["SyncWarnings"] == 1.0
