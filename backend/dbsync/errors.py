"""Errors meant for people, and the exit codes every command shares.

A DbSyncError is a failure explained in one line (bad input, an unreachable server, a guard that
refused, a run rolled back) that keeps its cause: the SQLSTATE of the server error behind it, the
side (source or target) and the phase it happened in. Code branches on the class or those fields,
never on the text; the one-line rendering (`str()`, `as_dict()`) belongs to the edges (the CLI,
the Lambda, the Fargate task). Anything else that escapes is a bug, not a user's problem: the
edges log its traceback and exit EXIT_BUG.
"""

from __future__ import annotations

import re

# One table of exit codes for every command (docs/cli.md).
EXIT_OK = 0  # done
EXIT_FINDINGS = 1  # a check that found problems
EXIT_FAILED = 2  # refused, or failed with staging unchanged
EXIT_DOES_NOT_FIT = 3  # a dry run whose estimate does not fit its budget
EXIT_BUG = 70  # an unexpected exception (EX_SOFTWARE)
EXIT_SIGINT = 130  # 128 + the signal's number, the shell's convention
EXIT_SIGTERM = 143


class DbSyncError(Exception):
    """A failure explained in one line; `sqlstate`, `side` and `phase` say where it came from."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, sqlstate: str | None = None, side: str | None = None,
                 phase: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.side = side  # "source", "target" or None
        self.phase = phase  # the sync's phase name (dbsync.sync.phases), or None

    @property
    def kind(self) -> str:
        """A stable name for the class of failure (`--json`, logs, metrics)."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")

    def as_dict(self) -> dict:
        return {"message": str(self), "kind": self.kind, "sqlstate": self.sqlstate, "side": self.side,
                "phase": self.phase, "exit_code": self.exit_code}


class LockNotAvailable(DbSyncError):
    """A table or sequence stayed busy past LOCK_TIMEOUT (SQLSTATE 55P03)."""


class ConnectionFailed(DbSyncError):
    """A database could not be reached or refused the login."""


class Interrupted(DbSyncError):
    """SIGINT or SIGTERM ended the run; everything was rolled back (dbsync.interrupt)."""

    def __init__(self, message: str, *, signal_number: int, **kw):
        super().__init__(message, **kw)
        self.exit_code = 128 + signal_number


LOCK_NOT_AVAILABLE = "55P03"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error (None for a client-side one, a lost connection included)."""
    return getattr(exc, "pgcode", None)


def pg_message(exc: BaseException) -> str:
    """The first line of a driver error: libpq's messages put the useful part first and the
    DETAIL/HINT/CONTEXT lines after, which are too long for a one-line report."""
    text = str(getattr(exc, "pgerror", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.removeprefix("ERROR:").strip()


_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


def shown_name(name: str) -> str:
    """A name as messages show it: in double quotes where its case or characters need them, bare
    otherwise — reserved words included, so this is for people to read, never SQL to run (SQL
    names are sql.Identifier)."""
    return name if _PLAIN.fullmatch(name) else '"' + name.replace('"', '""') + '"'
