"""Errors meant for people: one line, naming what was wrong, never a password."""

from __future__ import annotations


class DbSyncError(Exception):
    """A failure explained in one line (bad input, unreachable server, a guard that refused)."""


def pg_message(exc: BaseException) -> str:
    """The first line of a driver error: libpq's messages put the useful part first and the
    DETAIL/HINT/CONTEXT lines after, which are too long for a one-line report."""
    text = str(getattr(exc, "pgerror", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.removeprefix("ERROR:").strip()
