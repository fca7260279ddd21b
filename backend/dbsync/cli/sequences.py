"""`db-sync reset-sequences` and `db-sync check-sequences` (docs/sequences.md)."""

from __future__ import annotations

from dbsync.cli.common import EXIT_PROBLEM, as_json, connect_to, database_url, dsn_option, text_table
from dbsync.errors import EXIT_OK


def _counts(rows: list[dict]) -> dict[str, int]:
    from dbsync.results import ACTIONS

    out = dict.fromkeys(ACTIONS, 0)
    for r in rows:
        out[r["action"]] += 1
    return out


def cmd_reset_sequences(args) -> int:
    from dbsync.sequences import reset_sequences

    conn = connect_to(database_url(args), role="database")
    try:
        rows = reset_sequences(conn, dry_run=args.dry_run, schemas=args.schema or None, exact=args.exact,
                               create_missing=args.create_missing)
    finally:
        conn.close()
    counts = _counts(rows)
    if args.json:
        print(as_json({"dry_run": args.dry_run, "counts": counts, "sequences": rows}))
    else:
        if rows:
            print(text_table(rows, [("schema", "schema"), ("table", "table"), ("column", "column"),
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

    source = connect_to(args.source, role="source") if args.source else None
    try:
        conn = connect_to(database_url(args), role="database")
        try:
            report = check_report(conn, schemas=args.schema or None, source=source)
        finally:
            conn.close()
    finally:
        if source is not None:
            source.close()
    problems, unverifiable = report["problems"], report["unverifiable"]
    if args.json:
        print(as_json(report))
        return EXIT_PROBLEM if problems else EXIT_OK
    if problems:
        print(text_table(problems, [("schema", "schema"), ("table", "table"), ("column", "column"),
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


def add_parsers(sub) -> None:
    """reset-sequences and check-sequences."""
    p = sub.add_parser("reset-sequences", help="move every sequence past its data; restore lost defaults",
                       description="Repair every sequence-fed column so its next INSERT succeeds.")
    dsn_option(p)
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
    dsn_option(p)
    p.add_argument("--source", metavar="URL", help="prod (read only): it decides which columns must be fed")
    p.add_argument("--schema", action="append", metavar="S", help="only these schemas (repeatable)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_check_sequences)
