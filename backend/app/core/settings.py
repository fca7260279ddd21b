"""The API's settings: environment variables read once per Lambda container.

Tests build an app with their own `Settings(...)` (see `app.main.create_app`) or clear the cached
getter after changing the environment. Settings only one router module uses live in that module,
with their own cached getter, so that deleting the module deletes them too.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request

from dbsync.connect import DEFAULT_LOCK_TIMEOUT, lock_timeout_setting
from dbsync.errors import DbSyncError

PROD_STAGES = frozenset({"prod", "production"})


class Settings(BaseSettings):
    # An empty variable counts as unset: `STAGE=` must not pass for a stage name.
    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    database_url: SecretStr | None = None
    db_secret_arn: str | None = None
    db_host: str | None = None
    db_port: int | None = None
    db_name: str | None = None
    stage: str | None = None
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT

    @field_validator("lock_timeout")
    @classmethod
    def _valid_lock_timeout(cls, value: str) -> str:
        try:
            return lock_timeout_setting(value)
        except DbSyncError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("stage")
    @classmethod
    def _normalise_stage(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip().lower() or None

    @property
    def is_production(self) -> bool:
        """Unset counts as production: a guard that depends on it must fail closed."""
        return self.stage is None or self.stage in PROD_STAGES


@lru_cache
def get_settings() -> Settings:
    return Settings()


def get_app_settings(request: Request) -> Settings:
    """The settings the running app was built with (a dependency; see `create_app`)."""
    return request.app.state.settings
