"""The sync's two databases from the environment: a URL, or an AWS Secrets Manager secret.

    SOURCE_DATABASE_URL  or  SOURCE_DB_SECRET_ARN (+ SOURCE_DB_HOST / SOURCE_DB_PORT / SOURCE_DB_NAME)
    TARGET_DATABASE_URL  or  TARGET_DB_SECRET_ARN (+ TARGET_DB_HOST / TARGET_DB_PORT / TARGET_DB_NAME)

A secret holds the full RDS JSON or only username/password (an RDS-managed master secret); the
*_DB_HOST/_PORT/_NAME settings fill in what it lacks. Secrets are cached across warm Lambda
invocations, so after a rotation the cached password is stale: an authentication failure
re-fetches the secret once, bypassing the cache, and tries again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from dbsync.connect import connect, describe_dsn
from dbsync.errors import DbSyncError
from dbsync.secrets import database_url_from_secret

# libpq's wording when the server rejects the credentials (password, SCRAM, md5, PAM, …).
_AUTH_FAILURE_MARKERS = ("authentication failed", "password authentication", "no password supplied")


def is_auth_failure(message: str) -> bool:
    text = message.lower()
    return any(m in text for m in _AUTH_FAILURE_MARKERS)


@dataclass(frozen=True)
class Endpoint:
    """One side of the sync (`role` is "source" or "target"), as configured."""

    role: str
    url: str | None = None
    secret_arn: str | None = None
    host: str | None = None
    port: str | None = None
    dbname: str | None = None

    def resolve(self, *, force_fetch: bool = False) -> str:
        if self.url:
            return self.url
        return database_url_from_secret(self.secret_arn, host=self.host, port=self.port, dbname=self.dbname,
                                        force_fetch=force_fetch)

    def connect(self, role: str | None = None, options: str | None = None, params: dict | None = None):
        """Connect; for a secret, re-fetch once after an authentication failure (rotation)."""
        role = role or self.role
        try:
            return connect(self.resolve(), role=role, options=options, params=params)
        except DbSyncError as exc:
            if not self.secret_arn or not is_auth_failure(str(exc)):
                raise
        return connect(self.resolve(force_fetch=True), role=role, options=options, params=params)

    def describe(self) -> str:
        """Where it points, never the password."""
        if self.url:
            return describe_dsn(self.url)
        where = "/".join(x for x in (self.host, self.dbname) if x)
        return f"secret {self.secret_arn}" + (f" ({where})" if where else "")


def endpoint_from_env(role: str, env: Mapping[str, str] | None = None) -> Endpoint:
    """`role` "source" or "target" → its Endpoint from SOURCE_* / TARGET_* settings."""
    env = os.environ if env is None else env
    prefix = role.upper()

    def get(name: str) -> str | None:
        value = env.get(f"{prefix}_{name}")
        return value.strip() if value and value.strip() else None

    url, arn = get("DATABASE_URL"), get("DB_SECRET_ARN")
    if url and arn:
        raise DbSyncError(f"both {prefix}_DATABASE_URL and {prefix}_DB_SECRET_ARN are set; set only one")
    if not url and not arn:
        raise DbSyncError(f"no {role} database configured: set {prefix}_DATABASE_URL or {prefix}_DB_SECRET_ARN")
    port = get("DB_PORT")
    if port is not None and not port.isdigit():
        raise DbSyncError(f"{prefix}_DB_PORT={port!r} is not a port number")
    return Endpoint(role, url=url, secret_arn=arn, host=get("DB_HOST"), port=port, dbname=get("DB_NAME"))


def endpoints_from_env(env: Mapping[str, str] | None = None) -> tuple[Endpoint, Endpoint]:
    return endpoint_from_env("source", env), endpoint_from_env("target", env)


RULES_OPT_OUT = "none"


def _clean(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def masking_key_from_env(env: Mapping[str, str] | None = None):
    """SYNC_MASKING_KEY or the SYNC_MASKING_KEY_SECRET_ARN secret; None when neither is set."""
    from dbsync.masking.key import key_from

    env = os.environ if env is None else env
    return key_from(_clean(env.get("SYNC_MASKING_KEY")), _clean(env.get("SYNC_MASKING_KEY_SECRET_ARN")))


def rules_from_env(path: str | None = None, env: Mapping[str, str] | None = None):
    """The rules file at `path`, else at SYNC_RULES_FILE; None when neither is given, or when
    it is `none`: the explicit opt-out of masking."""
    from dbsync.masking.rules import load_rules

    env = os.environ if env is None else env
    path = path or _clean(env.get("SYNC_RULES_FILE"))
    return load_rules(path) if path and path.lower() != RULES_OPT_OUT else None


def max_seconds_from_env(value: float | None = None, env: Mapping[str, str] | None = None) -> float | None:
    """The time budget: `value` (a --max-seconds), else SYNC_MAX_SECONDS; None when neither is set."""
    env = os.environ if env is None else env
    text = _clean(env.get("SYNC_MAX_SECONDS"))
    if value is None and text is not None:
        try:
            value = float(text)
        except ValueError:
            raise DbSyncError(f"SYNC_MAX_SECONDS={text!r} is not a number of seconds") from None
    if value is not None and not value > 0:
        raise DbSyncError(f"the time budget must be a positive number of seconds, not {value:g}")
    return value


SYNC_MODES = ("full", "incremental")


def incremental_from_env(flag: bool = False, env: Mapping[str, str] | None = None) -> bool:
    """--incremental, else SYNC_MODE (`full`, the default, or `incremental`)."""
    env = os.environ if env is None else env
    mode = (_clean(env.get("SYNC_MODE")) or "full").lower()
    if mode not in SYNC_MODES:
        raise DbSyncError(f"SYNC_MODE={mode!r} is not one of {', '.join(SYNC_MODES)}")
    return flag or mode == "incremental"
