"""`db-sync verify` (docs/verify.md)."""

from __future__ import annotations

import sys

from dbsync.cli.common import as_json, load_settings, source_option, target_option
from dbsync.errors import EXIT_FINDINGS, EXIT_OK


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
    settings = load_settings(sync_rules_file=args.rules)
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
    print(as_json(report) if args.json else "\n".join(lines(report)))
    return EXIT_OK if report["ok"] else EXIT_FINDINGS


def add_parser(sub) -> None:
    """verify."""
    p = sub.add_parser("verify", help="prove staging is what prod masks to (exit 1 on findings)",
                       description="Compare staging's synced tables with prod's rows as the rules mask them"
                                   " (every row, by key-range summaries), attribute each difference with the"
                                   " sync's record, look for raw personal data and check staging's integrity"
                                   " (foreign keys, NOT VALID constraints, sequences, the record). Nothing is"
                                   " written on prod; temporary tables on staging only. Exit 0 clean, 1 findings,"
                                   " 2 could not verify.")
    source_option(p)
    target_option(p)
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE; `none`: no masking,"
                   " the personal-data checks skipped); the key comes from $SYNC_MASKING_KEY or"
                   " $SYNC_MASKING_KEY_SECRET_ARN")
    p.add_argument("--table", action="append", metavar="T",
                   help="only this table (schema.table or table; repeatable); default: every synced table")
    p.add_argument("--strict", action="store_true",
                   help="every difference is a finding, also those prod or staging wrote since the last sync")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=cmd_verify)
