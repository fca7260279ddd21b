"""The API's settings: its database (DATABASE_URL or DB_SECRET_ARN, + DB_HOST/DB_PORT/DB_NAME) and
LOCK_TIMEOUT, read once per Lambda container.

The mechanism is dbsync.settings', shared with the sync: the same names, the same one-line
refusals (SettingsError), the same re-read of a rotated secret. Tests build an app with their own
`Settings(...)` (see `app.main.create_app`) or clear the cached getter after changing the
environment. Settings only one router module uses live in that module, with their own cached
getter, so that deleting the module deletes them too.
"""

from __future__ import annotations

from functools import lru_cache

from dbsync.settings import DatabaseSettings, SharedSettings


class Settings(SharedSettings, DatabaseSettings):
    """DatabaseSettings (the API's database, how to connect) with LOCK_TIMEOUT."""


@lru_cache
def get_settings() -> Settings:
    return Settings.load()
