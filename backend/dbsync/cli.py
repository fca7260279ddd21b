"""`db-sync`: the engine on the command line.

    db-sync reset-sequences [--dsn URL] [--schema S]... [--dry-run] [--exact] [--no-create] [--json]
    db-sync check-sequences [--dsn URL] [--schema S]... [--json]
    db-sync sync [--source URL] [--target URL] [--table T]... [--rules FILE] [--incremental]
                 [--max-seconds N] [--dry-run] [--json]
    db-sync check-rules [--dsn URL] [--rules FILE] [--json]
    db-sync mask [--dsn URL] [--rules FILE] [--dry-run] [--json]

Exit status: 0 success; 1 a column ended in error (reset), something is behind or missing
(check-sequences) or a personal-data column no rule covers (check-rules); 2 bad input (a bad
rules file too), an unreachable database, or a sync or mask refused or rolled back (one line on
stderr, never a traceback; a sync or mask that exits 2 left the database unchanged).
"""

from __future__ import annotations

import argparse
import json
import sys

from dbsync.connect import connect
from dbsync.errors import DbSyncError
from dbsync.sequences import ACTIONS, check_sequences, reset_sequences
from dbsync.settings import DatabaseSettings, SourceDatabaseSettings, SyncSettings, TargetDatabaseSettings

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def _dsn_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", metavar="URL", help="the database (default: $DATABASE_URL)")


def _dsn(args) -> str:
    """--dsn, else DATABASE_URL (the API's database setting); "" when neither is given, which
    `connect` refuses in one line."""
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
    out = dict.fromkeys(ACTIONS, 0)
    for r in rows:
        out[r["action"]] += 1
    return out


def cmd_reset_sequences(args) -> int:
    conn = connect(_dsn(args), role="database")
    try:
        rows = reset_sequences(conn, dry_run=args.dry_run, schemas=args.schema or None, exact=args.exact,
                               create_missing=not args.no_create)
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
    return EXIT_PROBLEM if counts["error"] else EXIT_OK


def cmd_check_sequences(args) -> int:
    conn = connect(_dsn(args), role="database")
    try:
        problems = check_sequences(conn, schemas=args.schema or None)
    finally:
        conn.close()
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems}, indent=2))
    elif problems:
        print(_table(problems, [("schema", "schema"), ("table", "table"), ("column", "column"),
                                ("sequence", "sequence"), ("problem", "problem")]))
        print(f"{len(problems)} column(s) would fail or collide on INSERT: run `db-sync reset-sequences`")
    else:
        print("ok: every sequence-fed column takes its next INSERT")
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
    """The sync itself; a progress line per table on a terminal."""
    from dbsync.sync import sync_databases

    def progress(event: dict) -> None:
        if event.get("event") == "table_done" and sys.stderr.isatty():
            mb = event["bytes"] / 2**20
            rate = mb / event["seconds"] if event["seconds"] else 0.0
            print(f"  [{event['index']}/{event['count']}] {event['table']}: {event['rows']} rows,"
                  f" {mb:.1f} MB, {rate:.1f} MB/s", file=sys.stderr, flush=True)

    source = args.source or SourceDatabaseSettings.load().required()
    target = args.target or TargetDatabaseSettings.load().required()
    settings = SyncSettings.load(sync_rules_file=args.rules, sync_max_seconds=args.max_seconds,
                                 sync_mode="incremental" if args.incremental else None)
    rules = settings.rules()
    result = sync_databases(source, target, tables=args.table, dry_run=args.dry_run, progress=progress,
                            rules=rules, masking_key=settings.masking_key(), max_seconds=settings.sync_max_seconds,
                            incremental=settings.incremental)
    record(result)
    if rules is None:
        uncovered = result.get("masking", {}).get("uncovered") or []
        print("db-sync: warning: no masking rules (--rules or SYNC_RULES_FILE), so rows travel as they are"
              + (f"; personal-data columns among them: {', '.join(uncovered)}" if uncovered else ""), file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    rows = sum(t.get("rows", 0) for t in result["tables"])
    if args.dry_run:
        est = result["estimate"]
        fits = ("" if est["budget_seconds"] is None else
                f"; {'fits' if est['fits'] else 'does NOT fit'} the budget of {est['budget_seconds']:g} s")
        print(f"dry run: would copy {len(result['tables'])} table(s), {est['bytes'] / 2**20:.0f} MB on disk, from"
              f" {result['source']} to {result['target']}; about {est['seconds']:g} s at {est['rate_mb_s']:g} MB/s"
              f"{fits}; nothing was written")
    else:
        changed = [s for s in result["sequences_reset"] if s["action"] != "unchanged"]
        modes = [t.get("mode", "full") for t in result["tables"]]
        if any(m != "full" for m in modes):
            print(f"incremental: {modes.count('unchanged')} table(s) unchanged, {modes.count('delta')} by delta,"
                  f" {modes.count('full')} copied in full")
        print(f"synced {len(result['tables'])} table(s), {rows} rows, from {result['source']} to {result['target']}"
              f" in {result['timings']['total']:.1f}s; row counts validated; {len(result['sequences_reset'])}"
              f" sequence-fed column(s), {len(changed)} moved, {len(result['schema_changes'])} schema fix(es)")
    return EXIT_OK


def _rules_required(settings: SyncSettings):
    rules = settings.rules()
    if rules is None:
        raise DbSyncError("no rules file: pass --rules FILE or set SYNC_RULES_FILE")
    return rules


def cmd_check_rules(args) -> int:
    """Every column of the database: the rule that applies, `uncovered`, or copied as it is."""
    from dbsync.masking.check import rules_report

    rules = _rules_required(SyncSettings.load(sync_rules_file=args.rules))
    conn = connect(_dsn(args), role="database")
    try:
        report = rules_report(conn, rules)
    finally:
        conn.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report["columns"], [("table", "table"), ("column", "column"), ("rule", "rule")]))
        bad = [c for c in report["columns"] if c["rule"] == "uncovered"]
        print(f"{len(bad)} uncovered personal-data column(s): the sync would refuse" if bad
              else "ok: every personal-data column has a rule")
    return EXIT_PROBLEM if not report["ok"] else EXIT_OK


def cmd_mask(args) -> int:
    """The rules applied in place, in one transaction (a restored snapshot of prod)."""
    from dbsync.masking.check import mask_database

    settings = SyncSettings.load(sync_rules_file=args.rules)
    result = mask_database(_dsn(args), _rules_required(settings), settings.masking_key(), dry_run=args.dry_run)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_table(result["tables"], [("table", "table"), ("action", "action"), ("rows", "rows")]))
        print("dry run: nothing was changed" if args.dry_run else
               f"masked {sum(t['action'] != 'unchanged' for t in result['tables'])} table(s) in one transaction")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="db-sync", description="Refresh staging from prod and keep it working.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("reset-sequences", help="move every sequence past its data; restore lost defaults",
                       description="Repair every sequence-fed column so its next INSERT succeeds.")
    _dsn_arg(p)
    p.add_argument("--schema", action="append", metavar="S", help="only these schemas (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p.add_argument("--exact", action="store_true",
                   help="move sequences to right after the data even if they are ahead (may reuse values)")
    p.add_argument("--no-create", action="store_true",
                   help="do not create sequences for integer primary keys that have no default")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_reset_sequences)

    p = sub.add_parser("check-sequences", help="list columns whose next INSERT would fail (exit 1 if any)",
                       description="Exit 1 when any sequence-fed column is behind its data or missing.")
    _dsn_arg(p)
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
    p.add_argument("--dry-run", action="store_true",
                   help="run the guards and checks, estimate the duration, write nothing")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("check-rules", help="the masking rule of every column (exit 1 if one is uncovered)",
                       description="For every column, the rule that applies or `uncovered`; exit 1 when the"
                                   " sync's gate would refuse (a CI check for a migration).")
    _dsn_arg(p)
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_check_rules)

    p = sub.add_parser("mask", help="apply the masking rules in place, in one transaction",
                       description="Mask a database that holds prod's raw rows (a restored snapshot) with the"
                                   " same expressions as the sync; refused on the configured source.")
    _dsn_arg(p)
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE)")
    p.add_argument("--dry-run", action="store_true", help="check and plan, change nothing")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_mask)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DbSyncError as exc:
        print(f"db-sync: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("db-sync: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
