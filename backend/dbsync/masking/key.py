"""The masking key: from SYNC_MASKING_KEY or the SYNC_MASKING_KEY_SECRET_ARN secret, handed to
the server out of band.

The key never appears in SQL text (a failed or cancelled statement's text goes to the server's
log, and pg_stat_activity shows running ones): it travels in the connection's startup packet as
the custom setting `dbsync.mask_key` (hex, so that no character needs quoting in libpq's
`options`), and the strategies read it with current_setting(). It never appears in a log, an
error or a result either: MaskingKey's repr hides it, and so does the connection's
(dbsync.connect.Connection), whose `dsn` would otherwise carry the options.

A key shorter than MIN_LENGTH characters is refused: masked values are digests of the key and the
value, so anyone holding staging's masked rows can test guesses of the key offline, and only its
length makes that hopeless (docs/masking.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dbsync.errors import DbSyncError
from dbsync.masking.rules import KEY_SETTING

MIN_LENGTH = 32
MAKE_ONE = "make one with `openssl rand -hex 32`"


class MaskingKeyError(DbSyncError):
    """A masking key that cannot be used (empty, too short, or set twice)."""


@dataclass(frozen=True)
class MaskingKey:
    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.value:
            raise MaskingKeyError(f"the masking key is empty: {MAKE_ONE}")
        if len(self.value) < MIN_LENGTH:
            raise MaskingKeyError(f"the masking key has {len(self.value)} characters, fewer than {MIN_LENGTH}:"
                                  f" {MAKE_ONE}; a new key makes the next incremental sync compare every row once")

    def startup_options(self) -> str:
        """libpq `options` that set the key for the session (the only place it is written)."""
        return f"-c {KEY_SETTING}={self.value.hex()}"


def key_from(text: str | None) -> MaskingKey | None:
    """The key given as text (SYNC_MASKING_KEY, or the secret's whole value: the settings read it);
    None when there is none. Surrounding whitespace is dropped (a secret written from a file often
    ends in a newline)."""
    if not text or not text.strip():
        return None
    return MaskingKey(text.strip().encode())
