"""The API's settings: environment variables read once per Lambda container.

Tests build an app with their own `Settings(...)` (see `app.main.create_app`) or clear the cached
getter after changing the environment. Settings only one router module uses live in that module,
with their own cached getter, so that deleting the module deletes them too.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypeVar

from pydantic import SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request

from dbsync.connect import DEFAULT_LOCK_TIMEOUT, lock_timeout_setting
from dbsync.errors import DbSyncError

PROD_STAGES = frozenset({"prod", "production"})

S = TypeVar("S", bound=BaseSettings)


class SettingsError(DbSyncError):
    """A bad setting, in one line naming the variable: raised `from None` at import, so that
    Lambda's init error and a CLI's message show that line rather than pydantic's report, which
    repeats the input value (and DATABASE_URL holds a password)."""


def describe_validation_error(exc: ValidationError) -> str:
    """`DB_PORT: Input should be a valid integer, …`: the variable and the message, never the value."""
    parts = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        message = " ".join(error["msg"].removeprefix("Value error, ").split())
        name = str(error["loc"][0]).upper() if error["loc"] else ""
        parts.append(f"{name}: {message}" if name and not message.startswith(name) else message)
    return "; ".join(parts)


def load_settings(cls: type[S]) -> S:
    """`cls()` from the environment, or SettingsError with the one-line description."""
    try:
        return cls()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def only_one(first: str, first_value: object, second: str, second_value: object) -> None:
    """Two ways to give one setting: both at once is a mistake to report, not a precedence to guess."""
    if first_value and second_value:
        raise ValueError(f"both {first} and {second} are set; set only one")


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

    @model_validator(mode="after")
    def _one_database(self) -> Settings:
        only_one("DATABASE_URL", self.database_url and self.database_url.get_secret_value().strip(),
                 "DB_SECRET_ARN", self.db_secret_arn and self.db_secret_arn.strip())
        return self

    @property
    def is_production(self) -> bool:
        """Unset counts as production: a guard that depends on it must fail closed."""
        return self.stage is None or self.stage in PROD_STAGES


@lru_cache
def get_settings() -> Settings:
    return load_settings(Settings)


def get_app_settings(request: Request) -> Settings:
    """The settings the running app was built with (a dependency; see `create_app`)."""
    return request.app.state.settings
