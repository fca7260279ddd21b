"""`db-sync`: the engine on the command line.

    db-sync reset-sequences [--dsn URL] [--schema S]... [--dry-run] [--exact] [--create-missing | --no-create]
                            [--json]
    db-sync check-sequences [--dsn URL] [--source URL] [--schema S]... [--json]
    db-sync sync [--source URL] [--target URL] [--table T]... [--rules FILE] [--incremental]
                 [--max-seconds N] [--dry-run] [--json]
    db-sync check-rules [--dsn URL] [--target URL] [--rules FILE] [--json]
    db-sync mask [--dsn URL] [--rules FILE] [--dry-run] [--json]

Every command: `--debug` adds the traceback to a failure's one line. Exit status (one table for
every command, docs/cli.md): 0 done; 1 findings (a column ended in error, something is behind or
missing, a personal-data column no rule covers); 2 refused or failed, with staging unchanged (bad
input, an unreachable database, a sync or mask refused or rolled back: one line on stderr, and
with --json an error object on stdout); 3 a dry run whose estimate does not fit its budget; 70 a
bug (an unexpected exception); 130 / 143 interrupted by SIGINT / SIGTERM, rolled back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback

from dbsync import interrupt
from dbsync.errors import EXIT_BUG, EXIT_DOES_NOT_FIT, EXIT_FINDINGS, EXIT_OK, DbSyncError

# Each command imports what it uses: `db-sync --help` must not pay for psycopg2, pydantic or the
# engine (docs/cli.md). The settings are read here, at the edge, and handed to the engine.
EXIT_PROBLEM = EXIT_FINDINGS


def _settings(**overrides):
    """The sync's settings (dbsync.settings.SyncSettings: LOCK_TIMEOUT, SYNC_*), options given on
    the command line in place of their variables."""
    from dbsync.settings import SyncSettings

    return SyncSettings.load(**overrides)


def _lock_timeout() -> str:
    from dbsync.settings import SharedSettings

    return SharedSettings.load().lock_timeout


def _connect(url: str, role: str):
    """A connection with LOCK_TIMEOUT's lock timeout."""
    from dbsync.connect import connect

    return connect(url, role=role, lock_timeout=_lock_timeout())


def _dsn_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", metavar="URL", help="the database (default: $DATABASE_URL)")


def _dsn(args) -> str:
    """--dsn, else DATABASE_URL (the API's database setting); "" when neither is given, which
    `connect` refuses in one line."""
    from dbsync.settings import DatabaseSettings

    if args.dsn:
        return args.dsn
    url = DatabaseSettings.load().database_url
    return url.get_secret_value() if url is not None else ""


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain aligned text table."""
    cells = [[h for _, h in columns]] + [["" if r.get(k) is None else str(r.get(k)) for k, _ in columns]
                                          for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _counts(rows: list[dict]) -> dict[str, int]:
    from dbsync.results import ACTIONS

    out = dict.fromkeys(ACTIONS, 0)
    for r in rows:
        out[r["action"]] += 1
    return out


def cmd_reset_sequences(args) -> int:
    from dbsync.sequences import reset_sequences

    conn = _connect(_dsn(args), role="database")
    try:
        rows = reset_sequences(conn, dry_run=args.dry_run, schemas=args.schema or None, exact=args.exact,
                               create_missing=args.create_missing)
    finally:
        conn.close()
    counts = _counts(rows)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "counts": counts, "sequences": rows}, indent=2))
    else:
        if rows:
            print(_table(rows, [("schema", "schema"), ("table", "table"), ("column", "column"),
                                ("sequence", "sequence"), ("previous", "previous"), ("value", "next"),
                                ("action", "action" + (" (dry run)" if args.dry_run else "")),
                                ("error", "error")]))
        else:
            print("no sequence-fed columns found")
        print(", ".join(f"{n} {a}" for a, n in counts.items() if n) or "nothing to do")
        if counts["unverifiable"]:
            print("unverifiable: integer keys nothing feeds (the application's, or a lost sequence:"
                  " `check-sequences --source PROD` tells); --create-missing gives them sequences")
    return EXIT_PROBLEM if counts["error"] else EXIT_OK


def cmd_check_sequences(args) -> int:
    from dbsync.sequences import check_report

    source = _connect(args.source, role="source") if args.source else None
    try:
        conn = _connect(_dsn(args), role="database")
        try:
            report = check_report(conn, schemas=args.schema or None, source=source)
        finally:
            conn.close()
    finally:
        if source is not None:
            source.close()
    problems, unverifiable = report["problems"], report["unverifiable"]
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_PROBLEM if problems else EXIT_OK
    if problems:
        print(_table(problems, [("schema", "schema"), ("table", "table"), ("column", "column"),
                                ("sequence", "sequence"), ("problem", "problem")]))
        fix = "`db-sync sync` from prod" if source else "`db-sync reset-sequences`"
        grants = sorted({p["grant"] for p in problems if p.get("grant")})
        others = {(p["schema"], p["table"], p["column"]) for p in problems if not p.get("grant")}
        if others:
            print(f"{len(others)} column(s) would fail or collide on INSERT: run {fix}")
        if grants:
            print(f"{len(grants)} missing USAGE grant(s), which only a GRANT fixes: run " + "; ".join(grants))
    else:
        print("ok: every sequence-fed column takes its next INSERT" + (", fed as prod feeds it" if source else ""))
    if unverifiable:
        print(f"{len(unverifiable)} unverifiable integer key(s), not a failure (nothing feeds them: filled by the"
              " application, or their sequence was lost; --source PROD tells): "
              + ", ".join(f"{u['schema']}.{u['table']}.{u['column']}" for u in unverifiable))
    return EXIT_PROBLEM if problems else EXIT_OK


def cmd_sync(args) -> int:
    """Copy source into target (see dbsync.sync); with SYNC_METRICS=cloudwatch (the Fargate task)
    its metrics then go to CloudWatch, a failure's too (dbsync.metrics); stdout is untouched."""
    from dbsync.metrics import publisher_from_env, recorded

    def unpublished(exc: Exception) -> None:
        print(f"db-sync: warning: the run's metrics were not published: {type(exc).__name__}: "
              f"{(str(exc).splitlines() or [''])[0]}", file=sys.stderr)

    with recorded(publisher_from_env(), tables=args.table, dry_run=args.dry_run, on_error=unpublished) as record:
        return _sync(args, record)


def _sync(args, record) -> int:
    """The sync itself; its progress on stderr (dbsync.progress), a summary table on a terminal."""
    from dbsync.progress import reporter
    from dbsync.settings import RULES_OPT_OUT, SourceDatabaseSettings, TargetDatabaseSettings
    from dbsync.sync import sync_databases
    from dbsync.sync.budget import Deadline

    source = args.source or SourceDatabaseSettings.load().required(option="--source")
    target = args.target or TargetDatabaseSettings.load().required(option="--target")
    settings = _settings(sync_rules_file=args.rules, sync_max_seconds=args.max_seconds,
                         sync_mode="incremental" if args.incremental else None, sync_schema_drift=args.schema_drift,
                         sync_delete_orphans=args.delete_orphans or None, sync_verify=args.verify or None)
    seconds = settings.sync_max_seconds
    rules = settings.rules()
    progress = reporter(sys.stderr, quiet=args.quiet)
    try:
        result = sync_databases(source, target, tables=args.table, dry_run=args.dry_run, progress=progress,
                                rules=rules, masking_key=settings.masking_key(),
                                deadline=None if seconds is None else Deadline(args.started + seconds, seconds),
                                incremental=settings.incremental, allowlist=settings.sync_target_allowlist,
                                lock_timeout=settings.lock_timeout, schema_drift=settings.sync_schema_drift,
                                delete_orphans=settings.sync_delete_orphans,
                                exclude=settings.exclude(args.exclude_table), verify=settings.sync_verify)
    finally:
        if progress is not None:
            progress.close()
    record(result)
    for warning in result.get("warnings", []):
        print(f"db-sync: warning: {warning}", file=sys.stderr)
    if rules is None and (settings.sync_rules_file or "").lower() == RULES_OPT_OUT:
        print(f"db-sync: masking is off by choice (SYNC_RULES_FILE={settings.sync_rules_file}): rows travel as they"
              " are", file=sys.stderr)
    elif rules is None:
        uncovered = result.get("masking", {}).get("uncovered") or []
        print("db-sync: warning: no masking rules (--rules or SYNC_RULES_FILE), so rows travel as they are"
              + (f"; personal-data columns among them: {', '.join(uncovered)}" if uncovered else ""), file=sys.stderr)
    fits = not args.dry_run or result["estimate"]["fits"]
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK if fits else EXIT_DOES_NOT_FIT
    rows = sum(t.get("rows", 0) for t in result["tables"])
    if args.dry_run:
        est = result["estimate"]
        budget = ("" if est["budget_seconds"] is None else
                  f"; {'fits' if fits else 'does NOT fit'} the {est['seconds_left']:g} s left of the budget of"
                  f" {est['budget_seconds']:g} s")
        print(f"dry run: would copy {len(result['tables'])} table(s), {est['bytes'] / 2**20:.0f} MB on disk, from"
              f" {result['source']} to {result['target']}; about {est['seconds']:g} s at {est['rate_mb_s']:g} MB/s"
              f"{budget}; nothing was written")
        return EXIT_OK if fits else EXIT_DOES_NOT_FIT
    else:
        if sys.stdout.isatty() and not args.quiet:
            from dbsync.progress import summary

            print(summary(result))
        changed = [s for s in result["sequences_reset"] if s["action"] != "unchanged"]
        modes = [t.get("mode", "full") for t in result["tables"]]
        if any(m != "full" for m in modes):
            print(f"incremental: {modes.count('unchanged')} table(s) unchanged, {modes.count('delta')} by delta,"
                  f" {modes.count('full')} copied in full")
        print(f"synced {len(result['tables'])} table(s), {rows} rows, from {result['source']} to {result['target']}"
              f" in {result['timings']['total']:.1f}s; row counts validated; {len(result['sequences_reset'])}"
              f" sequence-fed column(s), {len(changed)} moved, {len(result['schema_changes'])} schema fix(es)")
    return EXIT_OK


def _rules_required(settings):
    rules = settings.rules()
    if rules is None:
        raise DbSyncError("no rules file: pass --rules FILE or set SYNC_RULES_FILE")
    return rules


def cmd_check_rules(args) -> int:
    """Every column of the database: the rule that applies, `uncovered`, or copied as it is; every
    fragment proved IMMUTABLE on the target, or `unchecked` without one. Without a rules file,
    the columns a rules file must cover."""
    from dbsync.masking.service import rules_report

    rules = _settings(sync_rules_file=args.rules).rules()
    conn = _connect(_dsn(args), role="database")
    try:
        target = _rules_target(args)
        try:
            report = rules_report(conn, rules, target)
        finally:
            if target is not None:
                target.close()
    finally:
        conn.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_rules_report(report)
    return EXIT_PROBLEM if not report["ok"] else EXIT_OK


def _rules_target(args):
    """Where check-rules proves the fragments immutable: --target, else TARGET_* (staging); None
    when neither is given."""
    from dbsync.settings import TargetDatabaseSettings

    if args.target:
        return _connect(args.target, role="target")
    settings = TargetDatabaseSettings.load()
    return settings.connect(role="target", lock_timeout=_lock_timeout()) if settings.configured else None


def _print_rules_report(report: dict) -> None:
    if report["rules"] is None:
        bad = [c for c in report["columns"] if c["rule"] == "uncovered"]
        if bad:
            print(_table(bad, [("table", "table"), ("column", "column"), ("flagged_by", "flagged by")]))
        print(f"no rules file: {len(bad)} column(s) need a rule"
              + (" (`db-sync rules init --source URL` drafts one)" if bad else ""))
        return
    print(_table(report["columns"], [("table", "table"), ("column", "column"), ("rule", "rule"),
                                      ("flagged_by", "flagged by")]))
    if report["fragments"]:
        rows = [dict(f, column=f["column"] or "where:") for f in report["fragments"]]
        print()
        print(_table(rows, [("table", "table"), ("column", "column"), ("fragment", "fragment"), ("check", "check")]))
    bad = [c for c in report["columns"] if c["rule"] == "uncovered"]
    unchecked = [f for f in report["fragments"] if f["check"] == "unchecked"]
    if bad:
        print(f"{len(bad)} uncovered personal-data column(s): the sync would refuse")
    if unchecked:
        print(f"{len(unchecked)} fragment(s) unchecked: pass --target URL (staging, or a scratch database with the"
              " same schema) or set TARGET_DATABASE_URL to prove them IMMUTABLE")
    if report["ok"]:
        print("ok: every personal-data column has a rule" + (", every fragment is IMMUTABLE" if report["fragments"]
                                                             else ""))


def _source(args):
    """--source, else SOURCE_* (prod): a DSN or the settings that connect to it."""
    from dbsync.settings import SourceDatabaseSettings

    return args.source or SourceDatabaseSettings.load().required(option="--source")


def cmd_rules_init(args) -> int:
    """A rules file drafted from prod's catalog, for a person to review (dbsync.masking.draft)."""
    from pathlib import Path

    from dbsync.masking.draft import draft_source
    from dbsync.masking.rules import TODO

    out = Path(args.output) if args.output else None
    if out is not None and out.exists():
        raise DbSyncError(f"{out} exists: rules init does not overwrite a rules file; pass another --output")
    lines, text = draft_source(_source(args), lock_timeout=_lock_timeout())
    drafted, todo = len(lines), sum(d.strategy == TODO for d in lines)
    if out is None:
        print(text, end="")
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise DbSyncError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"db-sync: drafted a rule for {drafted} flagged column(s)" + (f", {todo} left TODO" if todo else "")
          + f"{f' in {out}' if out else ''}: review each line, then run db-sync check-rules", file=sys.stderr)
    return EXIT_OK


def cmd_verify(args) -> int:
    """Staging against prod (dbsync.verify): one line per finding, or the report as JSON; the
    VerifyFindings and PersonalDataLeaks metrics with SYNC_METRICS=cloudwatch."""
    from dbsync.metrics import publisher_from_env, verify_values
    from dbsync.settings import SourceDatabaseSettings, TargetDatabaseSettings
    from dbsync.sync.budget import Deadline
    from dbsync.verify import verify_databases
    from dbsync.verify.report import lines

    source = args.source or SourceDatabaseSettings.load().required(option="--source")
    target = args.target or TargetDatabaseSettings.load().required(option="--target")
    settings = _settings(sync_rules_file=args.rules)
    seconds = settings.sync_max_seconds
    publish = publisher_from_env()
    report = verify_databases(source, target, rules=settings.rules(), masking_key=settings.masking_key(),
                              tables=args.table, strict=args.strict, allowlist=settings.sync_target_allowlist,
                              lock_timeout=settings.lock_timeout,
                              deadline=None if seconds is None else Deadline(args.started + seconds, seconds))
    if publish is not None:
        try:
            publish(verify_values(report))
        except Exception as exc:  # noqa: BLE001 - metrics never change the verdict
            print(f"db-sync: warning: the verify's metrics were not published: {type(exc).__name__}", file=sys.stderr)
    print(json.dumps(report, indent=2) if args.json else "\n".join(lines(report)))
    return EXIT_OK if report["ok"] else EXIT_FINDINGS


PREVIEW_WIDTH = 60  # characters of a value a preview shows


def cmd_preview(args) -> int:
    """Rows as they would arrive on staging, masked by prod's server in a read-only snapshot
    (dbsync.masking.preview); prod's raw values beside only with --show-raw, on a terminal."""
    from dbsync.masking.preview import preview

    if args.show_raw and (args.json or not sys.stdout.isatty()):
        raise DbSyncError("--show-raw prints prod's raw personal data: only on a terminal, never with --json or"
                          " into a file or pipe")
    settings = _settings(sync_rules_file=args.rules)
    tables = preview(_source(args), _rules_required(settings), settings.masking_key(), tables=args.table,
                     limit=args.limit, raw=args.show_raw, lock_timeout=settings.lock_timeout)
    if args.json:
        print(json.dumps({"tables": tables}, indent=2, default=str))
        return EXIT_OK
    for i, entry in enumerate(tables):
        print(("\n" if i else "") + f"{entry['table']}: " + (f"masked {', '.join(entry['masked'])}" if entry["masked"]
                                                          else "nothing masked"))
        if entry.get("note"):
            print(f"  {entry['note']}")
            continue
        print(_table(_preview_cells(entry), [(c, c) for c in entry["columns"]]) if entry["rows"] else "  (no rows)")
    print("\npreview: nothing was written; values as the sync would copy them to staging")
    return EXIT_OK


def _preview_cells(entry: dict) -> list[dict]:
    def cell(value) -> str:
        text = "NULL" if value is None else str(value).replace("\n", " ")
        return text if len(text) <= PREVIEW_WIDTH else text[:PREVIEW_WIDTH - 1] + "…"

    rows = []
    for n, row in enumerate(entry["rows"]):
        shown = {c: cell(v) for c, v in zip(entry["columns"], row, strict=True)}
        for c in entry["masked"] if "raw" in entry else ():
            shown[c] += f" (was {cell(entry['raw'][n][entry['columns'].index(c)])})"
        rows.append(shown)
    return rows


def cmd_mask(args) -> int:
    """The rules applied in place, in one transaction (a restored snapshot of prod)."""
    from dbsync.masking.service import mask_database
    from dbsync.settings import SourceDatabaseSettings

    settings = _settings(sync_rules_file=args.rules)
    source = SourceDatabaseSettings.load()
    result = mask_database(_dsn(args), _rules_required(settings), settings.masking_key(), dry_run=args.dry_run,
                           allowlist=settings.sync_target_allowlist, source=source if source.configured else None,
                           lock_timeout=settings.lock_timeout)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_table(result["tables"], [("table", "table"), ("action", "action"), ("rows", "rows")]))
        print("dry run: nothing was changed" if args.dry_run else
               f"masked {sum(t['action'] != 'unchanged' for t in result['tables'])} table(s) in one transaction")
    return EXIT_OK


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


DISTRIBUTION = "book-collection-dbsync"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="db-sync", description="Refresh staging from prod and keep it working.")
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("reset-sequences", help="move every sequence past its data; restore lost defaults",
                       description="Repair every sequence-fed column so its next INSERT succeeds.")
    _dsn_arg(p)
    p.add_argument("--schema", action="append", metavar="S", help="only these schemas (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--exact", action="store_true",
                   help="move sequences to right after the data even if they are ahead (may reuse values)")
    # Integer keys nothing feeds: by default a sequence is created only in the old sync's
    # signature (such keys outnumber the fed columns), else they are reported as unverifiable.
    create = p.add_mutually_exclusive_group()
    create.add_argument("--create-missing", dest="create_missing", action="store_const", const=True,
                        help="create a sequence for every integer primary key nothing feeds")
    create.add_argument("--no-create", dest="create_missing", action="store_const", const=False,
                        help="neither create sequences for integer primary keys nothing feeds nor list them")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_reset_sequences, create_missing=None)

    p = sub.add_parser("check-sequences", help="list columns whose next INSERT would fail (exit 1 if any)",
                       description="Exit 1 when any sequence-fed column is behind its data or missing.")
    _dsn_arg(p)
    p.add_argument("--source", metavar="URL", help="prod (read only): it decides which columns must be fed")
    p.add_argument("--schema", action="append", metavar="S", help="only these schemas (repeatable)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_check_sequences)

    p = sub.add_parser("sync", help="copy the source into the target in one transaction, then repair sequences",
                       description="Consistent, atomic copy of the source's tables into the target (staging):"
                                   " any failure leaves the target unchanged.")
    # Without --source/--target, the same settings as the Lambda: SOURCE_DATABASE_URL or
    # SOURCE_DB_SECRET_ARN (+ SOURCE_DB_HOST/PORT/NAME), and TARGET_* likewise.
    p.add_argument("--source", metavar="URL", help="the source database (prod; read only)"
                   " (default: $SOURCE_DATABASE_URL or $SOURCE_DB_SECRET_ARN)")
    p.add_argument("--target", metavar="URL", help="the target database (staging)"
                   " (default: $TARGET_DATABASE_URL or $TARGET_DB_SECRET_ARN)")
    p.add_argument("--table", action="append", metavar="T",
                   help="only this table (schema.table or table; repeatable); default: every table")
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE); the key comes from"
                   " $SYNC_MASKING_KEY or $SYNC_MASKING_KEY_SECRET_ARN")
    p.add_argument("--incremental", action="store_true",
                   help="write only the rows that differ, keeping staging readable (default: $SYNC_MODE)")
    p.add_argument("--max-seconds", type=float, metavar="N",
                   help="time budget: stop, rolled back, before N seconds (default: $SYNC_MAX_SECONDS; none)")
    p.add_argument("--schema-drift", choices=("tolerate", "refuse"),
                   help="where staging's schema differs from prod's: copy what both have and keep staging's own"
                   " (tolerate), or refuse listing every difference (default: $SYNC_SCHEMA_DRIFT, else tolerate)")
    p.add_argument("--delete-orphans", action="store_true",
                   help="delete staging's own rows left referencing rows prod lacks under NO ACTION/RESTRICT"
                   " keys, instead of refusing (default: $SYNC_DELETE_ORPHANS)")
    p.add_argument("--exclude-table", action="append", metavar="PATTERN",
                   help="leave tables matching this shell-style glob on schema.table alone, as staging's own"
                   " (repeatable; added to $SYNC_EXCLUDE_TABLES and the rules' exclude:)")
    p.add_argument("--verify", action="store_true",
                   help="before the COMMIT, compare every synced row with prod's as the rules mask it; a difference"
                   " fails the sync, rolled back (reads every row; default: $SYNC_VERIFY, else off)")
    p.add_argument("--dry-run", action="store_true",
                   help="run the guards and checks, estimate the duration, write nothing")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress (on a terminal, live; else a line every few"
                   " seconds) and no summary table")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("check-rules", help="the masking rule of every column (exit 1 if one is uncovered)",
                       description="For every column, the rule that applies or `uncovered`, and every sql:/where:"
                                   " fragment proved IMMUTABLE on --target; exit 1 when the sync's gate would"
                                   " refuse or a fragment is unchecked (a CI check for a migration).")
    _dsn_arg(p)
    p.add_argument("--target", metavar="URL", help="staging, or a scratch database with the same schema, where"
                   " the fragments are proved IMMUTABLE; nothing is written (default: $TARGET_DATABASE_URL or"
                   " $TARGET_DB_SECRET_ARN; without one they are reported unchecked)")
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_check_rules)

    p = sub.add_parser("rules", help="draft a rules file (rules init)",
                       description="Masking rules files: `rules init` drafts one from prod's catalog.")
    rules_sub = p.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    p = rules_sub.add_parser("init", help="draft a rules file from prod's catalog: a rule for every flagged column",
                             description="Draft a rules file from the source's catalog: every column the gate flags,"
                                         " with a strategy that fits its type, length and unique indexes and a"
                                         " comment saying why it was flagged; never keep. Where none fits: null if"
                                         " the column is nullable, else TODO, which check-rules refuses until a"
                                         " person decides. Reads the catalog only, writes nothing to the database.")
    p.add_argument("--source", metavar="URL", help="prod (read only) (default: $SOURCE_DATABASE_URL or"
                   " $SOURCE_DB_SECRET_ARN)")
    p.add_argument("--output", metavar="FILE", help="write the draft here (refused if it exists); default: stdout")
    p.add_argument("--debug", action="store_true", help="add the traceback to a failure's one line")
    p.set_defaults(func=cmd_rules_init)

    p = sub.add_parser("verify", help="prove staging is what prod masks to (exit 1 on findings)",
                       description="Compare staging's synced tables with prod's rows as the rules mask them"
                                   " (every row, by key-range summaries), attribute each difference with the"
                                   " sync's record, look for raw personal data and check staging's integrity"
                                   " (foreign keys, NOT VALID constraints, sequences, the record). Nothing is"
                                   " written on prod; temporary tables on staging only. Exit 0 clean, 1 findings,"
                                   " 2 could not verify.")
    p.add_argument("--source", metavar="URL", help="prod (read only) (default: $SOURCE_DATABASE_URL or"
                   " $SOURCE_DB_SECRET_ARN)")
    p.add_argument("--target", metavar="URL", help="staging (default: $TARGET_DATABASE_URL or $TARGET_DB_SECRET_ARN)")
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE; `none`: no masking,"
                   " the personal-data checks skipped); the key comes from $SYNC_MASKING_KEY or"
                   " $SYNC_MASKING_KEY_SECRET_ARN")
    p.add_argument("--table", action="append", metavar="T",
                   help="only this table (schema.table or table; repeatable); default: every synced table")
    p.add_argument("--strict", action="store_true",
                   help="every difference is a finding, also those prod or staging wrote since the last sync")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("preview", help="a few rows per table as they would arrive on staging, masked",
                       description="Rows of each table as the sync would copy them to staging: masked by the"
                                   " source's server with the rules, in a read-only snapshot; nothing is written."
                                   " Prod's raw values are shown beside only with --show-raw, on a terminal.")
    p.add_argument("--source", metavar="URL", help="prod (read only) (default: $SOURCE_DATABASE_URL or"
                   " $SOURCE_DB_SECRET_ARN)")
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE); the key comes from"
                   " $SYNC_MASKING_KEY or $SYNC_MASKING_KEY_SECRET_ARN")
    p.add_argument("--table", action="append", metavar="T", help="only this table (repeatable); default: every table")
    p.add_argument("--limit", type=int, default=5, metavar="N", help="rows per table (default: 5)")
    p.add_argument("--show-raw", action="store_true", help="show prod's raw value beside each masked one (only on a"
                   " terminal; never with --json)")
    p.add_argument("--json", action="store_true", help="JSON output (masked values only)")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("mask", help="apply the masking rules in place, in one transaction",
                       description="Mask a database that holds prod's raw rows (a restored snapshot) with the"
                                   " same expressions as the sync; refused on the configured source.")
    _dsn_arg(p)
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE)")
    p.add_argument("--dry-run", action="store_true", help="check and plan, change nothing")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_mask)

    _add_debug(parser)
    return parser


# What an interrupted command leaves behind, where it is not "nothing was written".
INTERRUPTED = {"reset-sequences": "the sequences it moved so far stay moved (each chunk commits); run it again"}


def _add_debug(parser: argparse.ArgumentParser) -> None:
    for command in parser._subparsers._group_actions[0].choices.values():
        command.add_argument("--debug", action="store_true", help="add the traceback to a failure's one line")


def _failed(args, exc: DbSyncError) -> int:
    """A failure at the edge: one line on stderr; the error object on stdout with --json."""
    print(f"db-sync: error: {exc}", file=sys.stderr)
    if getattr(args, "debug", False):
        traceback.print_exception(exc, file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": exc.as_dict()}, indent=2))
    return exc.exit_code


def _bug(args, exc: Exception) -> int:
    """An unexpected exception: a bug in db-sync, not the user's problem."""
    first = (str(exc).splitlines() or [""])[0]
    print(f"db-sync: internal error (a bug in db-sync): {type(exc).__name__}: {first}"
          + ("" if args.debug else " — rerun with --debug for the traceback"), file=sys.stderr)
    if args.debug:
        traceback.print_exception(exc, file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": {"message": f"{type(exc).__name__}: {first}", "kind": "bug",
                                                 "exit_code": EXIT_BUG}}, indent=2))
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


if __name__ == "__main__":
    sys.exit(main())
