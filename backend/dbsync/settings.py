"""Every setting, read from the environment in one way: pydantic-settings classes shared by the
API, both Lambdas, the `db-sync` CLI and the demo.

    EnvSettings               the base: an empty (or blank) variable counts as unset, `load()`
                              refuses a bad one in one line naming it (SettingsError), never its value
    SharedSettings            LOCK_TIMEOUT, for everything that connects
    DatabaseSettings          DATABASE_URL, or DB_SECRET_ARN with DB_HOST / DB_PORT / DB_NAME for
                              what the secret lacks: the API's database, and how to connect to it
      SourceDatabaseSettings    the same variables with SOURCE_: the sync's source (prod)
      TargetDatabaseSettings    the same variables with TARGET_: the sync's target (staging)
    SyncSettings              SYNC_TARGET_ALLOWLIST, SYNC_RULES_FILE, SYNC_MASKING_KEY or
                              SYNC_MASKING_KEY_SECRET_ARN, SYNC_MAX_SECONDS, SYNC_MODE, SYNC_SCHEMA_DRIFT,
                              SYNC_DELETE_ORPHANS, SYNC_EXCLUDE_TABLES, SYNC_VERIFY (+ LOCK_TIMEOUT)

A variable is the class's `env_prefix` plus the field's name, upper-cased. A command-line option
overrides its variable by being passed to `load()` (`SyncSettings.load(sync_rules_file=args.rules)`).
The API's own class (`app.core.settings.Settings`) is DatabaseSettings with LOCK_TIMEOUT; a router
with settings of its own keeps its class in its module, built on EnvSettings.

Secrets are cached across warm Lambda invocations, so after a rotation the cached password is
stale: `DatabaseSettings.connect` re-fetches the secret, bypassing the cache, after a failed
connection, and connects again only if the secret changed (the one place that does, for the API
and the sync alike).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dbsync.connect import DEFAULT_LOCK_TIMEOUT, connect, describe_dsn
from dbsync.environment import SettingsError, clean, valid_lock_timeout
from dbsync.errors import ConnectionFailed, DbSyncError
from dbsync.secrets import database_url_from_secret


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """`DB_PORT: Input should be a valid integer, …`: the variable and the message, never the value."""
    parts = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        message = " ".join(error["msg"].removeprefix("Value error, ").split())
        name = f"{prefix}{error['loc'][0]}".upper() if error["loc"] else ""
        parts.append(f"{name}: {message}" if name and not message.startswith(name) else message)
    return "; ".join(parts)


def only_one(first: str, first_value: object, second: str, second_value: object) -> None:
    """Two ways to give one setting: both at once is a mistake to report, not a precedence to guess."""
    if first_value is not None and second_value is not None:
        raise ValueError(f"both {first} and {second} are set; set only one")


class EnvSettings(BaseSettings):
    """The base of every settings class: `load()` from the environment, refusals in one line."""

    # Values as dbsync.environment.clean takes them: stripped, empty or blank counting as unset.
    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {k: clean(v) if isinstance(v, str) else v for k, v in data.items()
                if not (isinstance(v, str) and clean(v) is None)}

    @classmethod
    def env_prefix(cls) -> str:
        return cls.model_config.get("env_prefix", "")

    @classmethod
    def variables(cls) -> list[str]:
        """The environment variables this class reads."""
        return [f"{cls.env_prefix()}{name}".upper() for name in cls.model_fields]

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """The settings from the environment, with `overrides` (the ones that are not None: a
        command-line option given) in place of their variables; a refusal is a SettingsError."""
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise SettingsError(describe_validation_error(exc, cls.env_prefix())) from None


# `10s`, `500ms`, `2min`; `0` waits forever. Anything else is refused with one line.
LockTimeout = Annotated[str, AfterValidator(valid_lock_timeout)]


class SharedSettings(EnvSettings):
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT


# -- databases ------------------------------------------------------------------------------------

class DatabaseSettings(EnvSettings):
    """One database: a URL, or a Secrets Manager secret holding the full RDS JSON or only
    username/password (an RDS-managed master secret), DB_HOST/DB_PORT/DB_NAME filling in what it
    lacks. Unprefixed, the API's database; setting both the URL and the secret is refused."""

    role: ClassVar[str] = "API"  # "cannot connect to the API database (…)"
    what: ClassVar[str] = "database"  # "no database configured: …"

    database_url: SecretStr | None = None
    db_secret_arn: str | None = None
    db_host: str | None = None
    db_port: int | None = None
    db_name: str | None = None

    @model_validator(mode="after")
    def _one_database(self) -> Self:
        prefix = self.env_prefix()
        only_one(f"{prefix}DATABASE_URL", self.database_url, f"{prefix}DB_SECRET_ARN", self.db_secret_arn)
        return self

    @property
    def configured(self) -> bool:
        return self.database_url is not None or self.db_secret_arn is not None

    def required(self, option: str | None = None) -> Self:
        """Itself, or a DbSyncError when neither the URL nor the secret is set (naming the
        command-line `option` that gives it too, where there is one)."""
        if not self.configured:
            prefix = self.env_prefix()
            given = f"pass {option} URL or " if option else ""
            raise DbSyncError(f"no {self.what} configured: {given}set {prefix}DATABASE_URL or {prefix}DB_SECRET_ARN")
        return self

    def dsn(self, *, force_fetch: bool = False) -> str:
        """The URL, or the one built from the secret (force_fetch bypasses the secret cache)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        self.required()
        return database_url_from_secret(self.db_secret_arn, host=self.db_host, port=self.db_port,
                                        dbname=self.db_name, force_fetch=force_fetch)

    def connect(self, role: str | None = None, **kw: Any):
        """A connection (`kw`: dbsync.connect.connect's options). With a secret, a failed connection
        fetches the secret afresh and tries once more only if it changed (it was rotated): libpq
        gives a failed login no SQLSTATE to tell it from an unreachable host by, and trying an
        unchanged secret again would only cost a second connect timeout."""
        role = role or self.role
        dsn = self.dsn()
        try:
            return connect(dsn, role=role, **kw)
        except ConnectionFailed:
            if self.database_url is not None:
                raise
            fresh = self.dsn(force_fetch=True)
            if fresh == dsn:
                raise
        return connect(fresh, role=role, **kw)

    def describe(self) -> str:
        """Where it points, never the password (for logs)."""
        if self.database_url is not None:
            return describe_dsn(self.database_url.get_secret_value())
        if self.db_secret_arn is None:
            return f"(no {self.what} configured)"
        where = "/".join(x for x in (self.db_host, self.db_name) if x)
        return f"secret {self.db_secret_arn}" + (f" ({where})" if where else "")


class SourceDatabaseSettings(DatabaseSettings):
    """SOURCE_DATABASE_URL, or SOURCE_DB_SECRET_ARN (+ SOURCE_DB_HOST / _PORT / _NAME): prod."""

    model_config = SettingsConfigDict(env_prefix="SOURCE_")
    role: ClassVar[str] = "source"
    what: ClassVar[str] = "source database"


class TargetDatabaseSettings(DatabaseSettings):
    """TARGET_DATABASE_URL, or TARGET_DB_SECRET_ARN (+ TARGET_DB_HOST / _PORT / _NAME): staging."""

    model_config = SettingsConfigDict(env_prefix="TARGET_")
    role: ClassVar[str] = "target"
    what: ClassVar[str] = "target database"


# -- the sync -------------------------------------------------------------------------------------

RULES_OPT_OUT = "none"
SYNC_MODES = ("full", "incremental")
DRIFT_POLICIES = ("tolerate", "refuse")  # dbsync.sync.drift.POLICIES, not imported: the settings stay light


class SyncSettings(SharedSettings):
    """What the sync reads besides its two databases (the CLI's options override them)."""

    # comma-separated host/dbname or dbname entries (parsed by dbsync.sync.guards); unset: only a
    # local target
    sync_target_allowlist: str | None = None
    sync_rules_file: str | None = None  # `none`: the explicit opt-out of masking
    sync_masking_key: SecretStr | None = None
    sync_masking_key_secret_arn: str | None = None
    sync_max_seconds: float | None = None
    sync_mode: Literal["full", "incremental"] = "full"
    sync_schema_drift: Literal["tolerate", "refuse"] = "tolerate"
    sync_delete_orphans: bool = False
    sync_verify: bool = False  # sync --verify: compare every row with prod's before the COMMIT (dbsync.verify)
    sync_exclude_tables: str | None = None  # comma-separated globs on schema.table

    @field_validator("sync_schema_drift", "sync_mode", mode="before")
    @classmethod
    def _one_of(cls, value: Any, info) -> Any:
        """A word from a short list, any case; refused naming the variable and the words."""
        if isinstance(value, str):
            value = value.lower()
            choices = {"sync_schema_drift": DRIFT_POLICIES, "sync_mode": SYNC_MODES}[info.field_name]
            if value not in choices:
                raise ValueError(f"{info.field_name.upper()}={value!r} is not one of {', '.join(choices)}")
        return value

    @field_validator("sync_max_seconds", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"SYNC_MAX_SECONDS={value!r} is not a number of seconds") from None
        return value

    @field_validator("sync_max_seconds")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError(f"the time budget must be a positive number of seconds, not {value:g}")
        return value

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        only_one("SYNC_MASKING_KEY", self.sync_masking_key, "SYNC_MASKING_KEY_SECRET_ARN",
                 self.sync_masking_key_secret_arn)
        return self

    @property
    def incremental(self) -> bool:
        return self.sync_mode == "incremental"

    def exclude(self, extra: list[str] | None = None) -> list[str]:
        """The tables the sync leaves alone: SYNC_EXCLUDE_TABLES' patterns, then `extra` (--exclude-table)."""
        listed = [p.strip() for p in (self.sync_exclude_tables or "").split(",") if p.strip()]
        return listed + list(extra or [])

    def rules(self):
        """The masking rules (dbsync.masking.rules.Rules) from SYNC_RULES_FILE; None when it is
        unset or `none`."""
        from dbsync.masking.rules import load_rules

        path = self.sync_rules_file
        return load_rules(path) if path and path.lower() != RULES_OPT_OUT else None

    def masking_key(self):
        """The masking key (dbsync.masking.key.MaskingKey): SYNC_MASKING_KEY, or read from the
        SYNC_MASKING_KEY_SECRET_ARN secret; None when neither is set."""
        from dbsync.masking.key import MAKE_ONE, MaskingKeyError, key_from
        from dbsync.secrets import fetch_secret

        if self.sync_masking_key is not None:
            return key_from(self.sync_masking_key.get_secret_value())
        if self.sync_masking_key_secret_arn is None:
            return None
        text = fetch_secret(self.sync_masking_key_secret_arn)
        if not text.strip():
            raise MaskingKeyError(f"secret {self.sync_masking_key_secret_arn} (the masking key) is empty: {MAKE_ONE}")
        return key_from(text)
