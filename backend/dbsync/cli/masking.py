"""`db-sync check-rules`, `rules init`, `preview` and `mask` (docs/masking.md)."""

from __future__ import annotations

import sys

from dbsync.cli.common import (
    EXIT_PROBLEM,
    as_json,
    connect_to,
    database_url,
    dsn_option,
    load_settings,
    lock_timeout,
    rules_required,
    source_option,
    source_url,
    text_table,
)
from dbsync.errors import EXIT_OK, DbSyncError


def cmd_check_rules(args) -> int:
    """Every column of the database: the rule that applies, `uncovered`, or copied as it is; every
    fragment proved IMMUTABLE on the target, or `unchecked` without one. Without a rules file,
    the columns a rules file must cover."""
    from dbsync.masking.service import rules_report

    rules = load_settings(sync_rules_file=args.rules).rules()
    conn = connect_to(database_url(args), role="database")
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
        print(as_json(report))
    else:
        _print_rules_report(report)
    return EXIT_PROBLEM if not report["ok"] else EXIT_OK


def _rules_target(args):
    """Where check-rules proves the fragments immutable: --target, else TARGET_* (staging); None
    when neither is given."""
    from dbsync.settings import TargetDatabaseSettings

    if args.target:
        return connect_to(args.target, role="target")
    settings = TargetDatabaseSettings.load()
    return settings.connect(role="target", lock_timeout=lock_timeout()) if settings.configured else None


def _print_rules_report(report: dict) -> None:
    if report["rules"] is None:
        bad = [c for c in report["columns"] if c["rule"] == "uncovered"]
        if bad:
            print(text_table(bad, [("table", "table"), ("column", "column"), ("flagged_by", "flagged by")]))
        print(f"no rules file: {len(bad)} column(s) need a rule"
              + (" (`db-sync rules init --source URL` drafts one)" if bad else ""))
        return
    print(text_table(report["columns"], [("table", "table"), ("column", "column"), ("rule", "rule"),
                                      ("flagged_by", "flagged by")]))
    if report["fragments"]:
        rows = [dict(f, column=f["column"] or "where:") for f in report["fragments"]]
        print()
        print(text_table(rows, [("table", "table"), ("column", "column"), ("fragment", "fragment"),
                                ("check", "check")]))
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


def cmd_rules_init(args) -> int:
    """A rules file drafted from prod's catalog, for a person to review (dbsync.masking.draft)."""
    from pathlib import Path

    from dbsync.masking.draft import draft_source
    from dbsync.masking.rules import TODO

    out = Path(args.output) if args.output else None
    if out is not None and out.exists():
        raise DbSyncError(f"{out} exists: rules init does not overwrite a rules file; pass another --output")
    lines, text = draft_source(source_url(args), lock_timeout=lock_timeout())
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


PREVIEW_WIDTH = 60  # characters of a value a preview shows


def cmd_preview(args) -> int:
    """Rows as they would arrive on staging, masked by prod's server in a read-only snapshot
    (dbsync.masking.preview); prod's raw values beside only with --show-raw, on a terminal."""
    from dbsync.masking.preview import preview

    if args.show_raw and (args.json or not sys.stdout.isatty()):
        raise DbSyncError("--show-raw prints prod's raw personal data: only on a terminal, never with --json or"
                          " into a file or pipe")
    settings = load_settings(sync_rules_file=args.rules)
    tables = preview(source_url(args), rules_required(settings), settings.masking_key(), tables=args.table,
                     limit=args.limit, raw=args.show_raw, lock_timeout=settings.lock_timeout)
    if args.json:
        print(as_json({"tables": tables}))
        return EXIT_OK
    for i, entry in enumerate(tables):
        print(("\n" if i else "") + f"{entry['table']}: " + (f"masked {', '.join(entry['masked'])}" if entry["masked"]
                                                          else "nothing masked"))
        if entry.get("note"):
            print(f"  {entry['note']}")
            continue
        print(text_table(_preview_cells(entry), [(c, c) for c in entry["columns"]]) if entry["rows"] else "  (no rows)")
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

    settings = load_settings(sync_rules_file=args.rules)
    source = SourceDatabaseSettings.load()
    result = mask_database(database_url(args), rules_required(settings), settings.masking_key(), dry_run=args.dry_run,
                           allowlist=settings.sync_target_allowlist, source=source if source.configured else None,
                           lock_timeout=settings.lock_timeout)
    if args.json:
        print(as_json(result))
    else:
        print(text_table(result["tables"], [("table", "table"), ("action", "action"), ("rows", "rows")]))
        print("dry run: nothing was changed" if args.dry_run else
               f"masked {sum(t['action'] != 'unchanged' for t in result['tables'])} table(s) in one transaction")
    return EXIT_OK


def add_rules_parsers(sub) -> None:
    """check-rules and rules init."""
    p = sub.add_parser("check-rules", help="the masking rule of every column (exit 1 if one is uncovered)",
                       description="For every column, the rule that applies or `uncovered`, and every sql:/where:"
                                   " fragment proved IMMUTABLE on --target; exit 1 when the sync's gate would"
                                   " refuse or a fragment is unchecked (a CI check for a migration).")
    dsn_option(p)
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
    source_option(p)
    p.add_argument("--output", metavar="FILE", help="write the draft here (refused if it exists); default: stdout")
    p.add_argument("--debug", action="store_true", help="add the traceback to a failure's one line")
    p.set_defaults(func=cmd_rules_init)


def add_data_parsers(sub) -> None:
    """preview and mask."""
    p = sub.add_parser("preview", help="a few rows per table as they would arrive on staging, masked",
                       description="Rows of each table as the sync would copy them to staging: masked by the"
                                   " source's server with the rules, in a read-only snapshot; nothing is written."
                                   " Prod's raw values are shown beside only with --show-raw, on a terminal.")
    source_option(p)
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
    dsn_option(p)
    p.add_argument("--rules", metavar="FILE", help="masking rules (default: $SYNC_RULES_FILE)")
    p.add_argument("--dry-run", action="store_true", help="check and plan, change nothing")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_mask)
