"""One variable read as the settings classes (dbsync.settings) read theirs, without pydantic, whose
import would be most of a short command's start-up: `db-sync reset-sequences` and
`check-sequences` with --dsn read LOCK_TIMEOUT alone. The rules are stated here once and the
classes use them: a value loses its surrounding whitespace, an empty or blank one counts as unset,
the name matches in any case (pydantic-settings' case_sensitive is off), and a bad value is one
SettingsError line naming the variable, never its value's secrets."""

from __future__ import annotations

import os

from dbsync.connect import DEFAULT_LOCK_TIMEOUT, lock_timeout_setting
from dbsync.errors import DbSyncError


class SettingsError(DbSyncError):
    """A bad setting, in one line naming the variable: raised `from None`, so that Lambda's init
    error and a CLI's message show that line rather than pydantic's report, which repeats the input
    value (and DATABASE_URL holds a password)."""


def clean(value: str) -> str | None:
    """A variable's value as every setting takes it: stripped (a value pasted with a newline);
    empty or blank is unset (`DB_HOST=` must not pass for a host name)."""
    return value.strip() or None


def env_value(variable: str) -> str | None:
    """One variable, cleaned; its name matched in any case."""
    value = os.environ.get(variable)
    if value is None:
        value = next((v for k, v in os.environ.items() if k.upper() == variable), None)
    return None if value is None else clean(value)


def valid_lock_timeout(value: str) -> str:
    """`10s`, `500ms`, `2min`; `0` waits forever. Anything else: ValueError, in one line."""
    try:
        return lock_timeout_setting(value)
    except DbSyncError as exc:
        raise ValueError(str(exc)) from None


def lock_timeout() -> str:
    """LOCK_TIMEOUT as SharedSettings.load() reads it: the same default, check and refusal."""
    value = env_value("LOCK_TIMEOUT")
    if value is None:
        return DEFAULT_LOCK_TIMEOUT
    try:
        return valid_lock_timeout(value)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
