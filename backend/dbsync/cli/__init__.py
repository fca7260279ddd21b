"""`db-sync`: the engine on the command line, a thin shell — each command in a module of its own
(`sequences`: reset-sequences, check-sequences; `sync`; `masking`: check-rules, rules init, preview,
mask; `verify`), what they share in `common`. `db-sync --help` lists them; docs/cli.md holds every
command's help, written from this parser.

Every command: `--debug` adds the traceback to a failure's one line. Exit status (one table for
every command, docs/cli.md): 0 done; 1 findings (a column ended in error, something is behind or
missing, a personal-data column no rule covers); 2 refused or failed, with staging unchanged (bad
input, an unreachable database, a sync or mask refused or rolled back: one line on stderr, and
with --json an error object on stdout); 3 a dry run whose estimate does not fit its budget; 70 a
bug (an unexpected exception); 130 / 143 interrupted by SIGINT / SIGTERM, rolled back.
"""

from __future__ import annotations

import argparse
import sys
import time

from dbsync import interrupt
from dbsync.cli import masking, sequences, sync, verify
from dbsync.errors import EXIT_BUG, DbSyncError

DISTRIBUTION = "book-collection-dbsync"


class _Version(argparse.Action):
    """--version: the installed distribution's version, read only when asked for."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):  # noqa: A002
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version(DISTRIBUTION)
        except PackageNotFoundError:  # run from a source tree that was never installed
            found = "(not installed)"
        print(f"db-sync {found}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="db-sync", description="Refresh staging from prod and keep it working.")
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sequences.add_parsers(sub)
    sync.add_parser(sub)
    masking.add_rules_parsers(sub)
    verify.add_parser(sub)
    masking.add_data_parsers(sub)
    _add_debug(parser)
    return parser


# What an interrupted command leaves behind, where it is not "nothing was written".
INTERRUPTED = {"reset-sequences": "the sequences it moved so far stay moved (each chunk commits); run it again"}


def _add_debug(parser: argparse.ArgumentParser) -> None:
    for command in parser._subparsers._group_actions[0].choices.values():
        command.add_argument("--debug", action="store_true", help="add the traceback to a failure's one line")


def _failed(args, exc: DbSyncError) -> int:
    """A failure at the edge: one line on stderr; the error object on stdout with --json."""
    import traceback

    from dbsync.cli.common import as_json

    print(f"db-sync: error: {exc}", file=sys.stderr)
    if getattr(args, "debug", False):
        traceback.print_exception(exc, file=sys.stderr)
    if getattr(args, "json", False):
        print(as_json({"ok": False, "error": exc.as_dict()}))
    return exc.exit_code


def _bug(args, exc: Exception) -> int:
    """An unexpected exception: a bug in db-sync, not the user's problem."""
    import traceback

    from dbsync.cli.common import as_json

    first = (str(exc).splitlines() or [""])[0]
    print(f"db-sync: internal error (a bug in db-sync): {type(exc).__name__}: {first}"
          + ("" if args.debug else " — rerun with --debug for the traceback"), file=sys.stderr)
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    if getattr(args, "json", False):
        print(as_json({"ok": False, "error": {"message": f"{type(exc).__name__}: {first}", "kind": "bug",
                                              "exit_code": EXIT_BUG}}))
    return EXIT_BUG


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()  # the one deadline a command's budget counts from
    args = build_parser().parse_args(argv)
    args.started = started
    with interrupt.handling_signals():
        try:
            return args.func(args)
        except DbSyncError as exc:
            return _failed(args, exc)
        except interrupt.Signalled:
            # Outside a sync's or a mask's run, which say where they were and roll back themselves.
            return _failed(args, interrupt.interrupted(f"running {args.command}", what=INTERRUPTED.get(
                args.command, "nothing was written")))
        except Exception as exc:  # noqa: BLE001 - the edge: every bug ends in one line and exit 70
            return _bug(args, exc)
