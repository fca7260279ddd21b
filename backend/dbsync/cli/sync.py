"""`db-sync sync` (docs/sync.md): the settings read here and handed to dbsync.sync; progress and
the closing summary on a terminal (dbsync.progress); metrics when SYNC_METRICS says so."""

from __future__ import annotations

import sys

from dbsync.cli.common import as_json, load_settings, source_option, target_option
from dbsync.errors import EXIT_DOES_NOT_FIT, EXIT_OK


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
    """The sync itself; its progress on stderr (dbsync.progress), then what it did."""
    from dbsync.progress import reporter
    from dbsync.sync import sync_databases

    settings = load_settings(sync_rules_file=args.rules, sync_max_seconds=args.max_seconds,
                             sync_mode="incremental" if args.incremental else None,
                             sync_schema_drift=args.schema_drift, sync_delete_orphans=args.delete_orphans or None,
                             sync_verify=args.verify or None)
    rules = settings.rules()
    progress = reporter(sys.stderr, quiet=args.quiet)
    try:
        result = sync_databases(*_databases(args), tables=args.table, dry_run=args.dry_run, progress=progress,
                                rules=rules, **_options(args, settings))
    finally:
        if progress is not None:
            progress.close()
    record(result)
    _warn(result, settings, rules)
    fits = not args.dry_run or result["estimate"]["fits"]
    if args.json:
        print(as_json(result))
    elif args.dry_run:
        print(_estimate_line(result, fits))
    else:
        _report(result, quiet=args.quiet)
    return EXIT_OK if fits else EXIT_DOES_NOT_FIT


def _databases(args) -> tuple:
    """--source / --target, else the SOURCE_* / TARGET_* settings."""
    from dbsync.settings import SourceDatabaseSettings, TargetDatabaseSettings

    return (args.source or SourceDatabaseSettings.load().required(option="--source"),
            args.target or TargetDatabaseSettings.load().required(option="--target"))


def _options(args, settings) -> dict:
    """The settings as sync_databases takes them: plain values, the deadline counted from the start."""
    from dbsync.sync.budget import Deadline

    seconds = settings.sync_max_seconds
    return {"masking_key": settings.masking_key(),
            "deadline": None if seconds is None else Deadline(args.started + seconds, seconds),
            "incremental": settings.incremental, "allowlist": settings.sync_target_allowlist,
            "lock_timeout": settings.lock_timeout, "schema_drift": settings.sync_schema_drift,
            "delete_orphans": settings.sync_delete_orphans, "exclude": settings.exclude(args.exclude_table),
            "verify": settings.sync_verify}


def _warn(result: dict, settings, rules) -> None:
    from dbsync.settings import RULES_OPT_OUT

    for warning in result.get("warnings", []):
        print(f"db-sync: warning: {warning}", file=sys.stderr)
    if rules is None and (settings.sync_rules_file or "").lower() == RULES_OPT_OUT:
        print(f"db-sync: masking is off by choice (SYNC_RULES_FILE={settings.sync_rules_file}): rows travel as they"
              " are", file=sys.stderr)
    elif rules is None:
        uncovered = result.get("masking", {}).get("uncovered") or []
        print("db-sync: warning: no masking rules (--rules or SYNC_RULES_FILE), so rows travel as they are"
              + (f"; personal-data columns among them: {', '.join(uncovered)}" if uncovered else ""), file=sys.stderr)


def _estimate_line(result: dict, fits: bool) -> str:
    est = result["estimate"]
    budget = ("" if est["budget_seconds"] is None else
              f"; {'fits' if fits else 'does NOT fit'} the {est['seconds_left']:g} s left of the budget of"
              f" {est['budget_seconds']:g} s")
    return (f"dry run: would copy {len(result['tables'])} table(s), {est['bytes'] / 2**20:.0f} MB on disk, from"
            f" {result['source']} to {result['target']}; about {est['seconds']:g} s at {est['rate_mb_s']:g} MB/s"
            f"{budget}; nothing was written")


def _report(result: dict, *, quiet: bool) -> None:
    """The summary table on a terminal, then the closing lines."""
    if sys.stdout.isatty() and not quiet:
        from dbsync.progress import summary

        print(summary(result))
    rows = sum(t.get("rows", 0) for t in result["tables"])
    changed = [s for s in result["sequences_reset"] if s["action"] != "unchanged"]
    modes = [t.get("mode", "full") for t in result["tables"]]
    if any(m != "full" for m in modes):
        print(f"incremental: {modes.count('unchanged')} table(s) unchanged, {modes.count('delta')} by delta,"
              f" {modes.count('full')} copied in full")
    print(f"synced {len(result['tables'])} table(s), {rows} rows, from {result['source']} to {result['target']}"
          f" in {result['timings']['total']:.1f}s; row counts validated; {len(result['sequences_reset'])}"
          f" sequence-fed column(s), {len(changed)} moved, {len(result['schema_changes'])} schema fix(es)")


def add_parser(sub) -> None:
    """sync."""
    p = sub.add_parser("sync", help="copy the source into the target in one transaction, then repair sequences",
                       description="Consistent, atomic copy of the source's tables into the target (staging):"
                                   " any failure leaves the target unchanged.")
    # Without --source/--target, the same settings as the Lambda: SOURCE_DATABASE_URL or
    # SOURCE_DB_SECRET_ARN (+ SOURCE_DB_HOST/PORT/NAME), and TARGET_* likewise.
    source_option(p)
    target_option(p)
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
