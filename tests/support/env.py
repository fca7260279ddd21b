"""Environment variables that tests clear so that the outer environment cannot leak into them."""

from __future__ import annotations

from dbsync.settings import SourceDatabaseSettings, SyncSettings, TargetDatabaseSettings

# What the sync (CLI and db_sync Lambda) reads: its two databases, its guards, masking, budget, mode.
SYNC_SETTINGS = tuple(name for cls in (SourceDatabaseSettings, TargetDatabaseSettings, SyncSettings)
                      for name in cls.variables())
