"""Environment variables that tests clear so that the outer environment cannot leak into them."""

from __future__ import annotations

# What the sync (CLI and db_sync Lambda) reads for its two databases and its guards.
SYNC_SETTINGS = (
    "SOURCE_DATABASE_URL", "TARGET_DATABASE_URL", "SOURCE_DB_SECRET_ARN", "TARGET_DB_SECRET_ARN",
    "SOURCE_DB_HOST", "SOURCE_DB_PORT", "SOURCE_DB_NAME", "TARGET_DB_HOST", "TARGET_DB_PORT",
    "TARGET_DB_NAME", "SYNC_TARGET_ALLOWLIST", "LOCK_TIMEOUT",
)
