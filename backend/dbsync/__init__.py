"""The shared engine: catalog reading, sequence planning and repair, streaming copy and the sync.

The API, the db_sync Lambda and the `db-sync` CLI are thin shells over it.
"""

from dbsync.errors import DbSyncError
from dbsync.sequences import check_sequences, plan_sequences, reset_sequences

__all__ = ["DbSyncError", "check_sequences", "plan_sequences", "reset_sequences"]
