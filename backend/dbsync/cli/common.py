"""What every command shares: the settings read at the edge, connections with LOCK_TIMEOUT's lock
timeout, the database a command is pointed at, a plain text table. Each import is inside the
function that needs it: `db-sync --help` must not pay for psycopg2, pydantic or the engine."""

from __future__ import annotations

import argparse

from dbsync.errors import EXIT_FINDINGS, DbSyncError

# Each command imports what it uses: `db-sync --help` must not pay for psycopg2, pydantic or the
# engine (docs/cli.md). The settings are read here, at the edge, and handed to the engine.
EXIT_PROBLEM = EXIT_FINDINGS


def load_settings(**overrides):
    """The sync's settings (dbsync.settings.SyncSettings: LOCK_TIMEOUT, SYNC_*), options given on
    the command line in place of their variables."""
    from dbsync.settings import SyncSettings

    return SyncSettings.load(**overrides)


def lock_timeout() -> str:
    """LOCK_TIMEOUT, read without pydantic (dbsync.environment: SharedSettings' meaning)."""
    from dbsync.environment import lock_timeout

    return lock_timeout()


def connect_to(url: str, role: str):
    """A connection with LOCK_TIMEOUT's lock timeout."""
    from dbsync.connect import connect

    return connect(url, role=role, lock_timeout=lock_timeout())


def source_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", metavar="URL", help="prod, read only (default: $SOURCE_DATABASE_URL or"
                        " $SOURCE_DB_SECRET_ARN)")


def target_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", metavar="URL", help="staging (default: $TARGET_DATABASE_URL or"
                        " $TARGET_DB_SECRET_ARN)")


def dsn_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", metavar="URL", help="the database (default: $DATABASE_URL)")


def database_url(args) -> str:
    """--dsn, else DATABASE_URL (the API's database setting); "" when neither is given, which
    `connect` refuses in one line."""
    if args.dsn:
        return args.dsn
    from dbsync.settings import DatabaseSettings

    url = DatabaseSettings.load().database_url
    return url.get_secret_value() if url is not None else ""


def source_url(args):
    """--source, else SOURCE_* (prod): a DSN or the settings that connect to it."""
    from dbsync.settings import SourceDatabaseSettings

    return args.source or SourceDatabaseSettings.load().required(option="--source")


def rules_required(settings):
    rules = settings.rules()
    if rules is None:
        raise DbSyncError("no rules file: pass --rules FILE or set SYNC_RULES_FILE")
    return rules


def text_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain aligned text table."""
    cells = [[h for _, h in columns]] + [["" if r.get(k) is None else str(r.get(k)) for k, _ in columns]
                                          for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def as_json(document: dict) -> str:
    """`--json` output: a top-level key per line, and a list of objects (a sequence, a table, a
    finding per entry) one entry per line. Readable at thousands of entries, and written by the
    C encoder: with `indent` the json module encodes in Python, 0.03 s for 3,000 sequences."""
    import json

    def value(v) -> str:
        if isinstance(v, list) and v and all(isinstance(item, dict) for item in v):
            return "[\n" + ",\n".join("    " + json.dumps(item, default=str) for item in v) + "\n  ]"
        return json.dumps(v, default=str)

    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {value(v)}" for k, v in document.items()) + "\n}"
