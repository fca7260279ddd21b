"""Row counts after the copy: what the source's COPY sent (its snapshot) against what the target holds."""

from __future__ import annotations

from psycopg2 import sql

from dbsync.results import TableValidated, Validation
from dbsync.sync.copy import CopyResult
from dbsync.sync.units import Unit


def count_rows(conn, units: list[Unit], copied: dict[str, CopyResult]) -> Validation:
    tables: list[TableValidated] = []
    with conn.cursor() as cur:
        for u in units:
            result = copied[u.label]
            if result.counted:
                target_rows = result.target_rows
            else:
                only = sql.SQL("") if u.target.relkind == "p" else sql.SQL("ONLY ")
                cur.execute(sql.SQL("SELECT count(*) FROM {}{}").format(only, u.target.ident))
                target_rows = cur.fetchone()[0]
            source_rows = result.source_rows
            tables.append(TableValidated(table=u.label, source_rows=source_rows, target_rows=target_rows,
                                         ok=source_rows == target_rows))
    return Validation(ok=all(t["ok"] for t in tables), tables=tables)


def mismatch_message(validation: Validation) -> str:
    bad = [t for t in validation["tables"] if not t["ok"]]
    return "row counts differ after the copy: " + "; ".join(
        f"{t['table']} source {t['source_rows']} target {t['target_rows']}" for t in bad)
