"""What the sync sets aside on the target for the load and puts back after it: the tables' own
triggers (disabled, so they cannot rewrite prod's rows), foreign keys on or into them (dropped,
re-added once the data is in) and indexes of plain tables (dropped, rebuilt right after each
table's COPY). All of it is DDL inside the sync's one target transaction, so a failed sync's
rollback brings everything back as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import constraints, qualified
from dbsync.catalog.constraints import ForeignKey, Index, Trigger
from dbsync.results import SetAside


@dataclass
class SetAsideObjects:
    triggers: list[Trigger] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    indexes: dict[int, list[Index]] = field(default_factory=dict)  # table oid → its indexes

    def counts(self) -> SetAside:
        return SetAside(triggers=len(self.triggers), foreign_keys=len(self.foreign_keys),
                        indexes=sum(len(v) for v in self.indexes.values()))


# -- triggers ----------------------------------------------------------------------------------

def disable_user_triggers(conn, oids: list[int]) -> list[Trigger]:
    """The target's own triggers must not rewrite prod's rows on the way in (pg_dump
    --disable-triggers does the same; DISABLE TRIGGER on a named trigger needs only ownership)."""
    with conn.cursor() as cur:
        found = constraints.user_triggers(cur, oids)
        for t in found:
            cur.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(
                qualified(t.schema, t.table), sql.Identifier(t.name)))
    return found


_ENABLE = {"O": sql.SQL("ENABLE TRIGGER"), "R": sql.SQL("ENABLE REPLICA TRIGGER"),
           "A": sql.SQL("ENABLE ALWAYS TRIGGER")}


def restore_triggers(conn, found: list[Trigger]) -> None:
    with conn.cursor() as cur:
        for t in found:
            cur.execute(sql.SQL("ALTER TABLE {} {} {}").format(
                qualified(t.schema, t.table), _ENABLE[t.enabled], sql.Identifier(t.name)))


# -- foreign keys ------------------------------------------------------------------------------

def drop_foreign_keys(conn, oids: list[int]) -> list[ForeignKey]:
    """Foreign keys on or into the synced tables, dropped for the load and re-added after it.

    Loading with them in place checks every row with its own lookup (millions of index probes);
    re-adding one validates the whole table in a single join. DDL is transactional, so a failed
    sync brings them back untouched.
    """
    with conn.cursor() as cur:
        found = constraints.foreign_keys(cur, oids)
        for fk in found:
            cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                qualified(fk.schema, fk.table), sql.Identifier(fk.name)))
    return found


def restore_foreign_keys(conn, found: list[ForeignKey]) -> None:
    with conn.cursor() as cur:
        for fk in found:
            table = qualified(fk.schema, fk.table)
            cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                table, sql.Identifier(fk.name), sqltext.deparsed(fk.definition)))
            if fk.comment is not None:
                cur.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                    sql.Identifier(fk.name), table, sql.Literal(fk.comment)))


# -- indexes -----------------------------------------------------------------------------------

def drop_indexes(conn, oids: list[int]) -> dict[int, list[Index]]:
    """Indexes dropped for the load and rebuilt right after each table's COPY.

    Building an index once from the loaded table (a sort) is several times cheaper than
    inserting every row into it; pg_restore loads the same way. A failed sync's rollback brings
    the originals back."""
    found: dict[int, list[Index]] = {}
    with conn.cursor() as cur:
        for ix in constraints.rebuildable_indexes(cur, oids):
            if ix.constraint is not None:
                cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    qualified(ix.schema, ix.table), sql.Identifier(ix.constraint)))
            else:
                cur.execute(sql.SQL("DROP INDEX {}").format(qualified(ix.schema, ix.name)))
            found.setdefault(ix.table_oid, []).append(ix)
    return found


def restore_indexes(conn, indexes: list[Index]) -> None:
    with conn.cursor() as cur:
        for ix in indexes:
            table = qualified(ix.schema, ix.table)
            if ix.constraint is not None:
                cur.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    table, sql.Identifier(ix.constraint), sqltext.deparsed(ix.constraint_definition)))
                if ix.name != ix.constraint:  # the constraint's index is named after it; keep the old name
                    cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        qualified(ix.schema, ix.constraint), sql.Identifier(ix.name)))
                if ix.constraint_comment is not None:
                    cur.execute(sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                        sql.Identifier(ix.constraint), table, sql.Literal(ix.constraint_comment)))
            else:
                cur.execute(sqltext.deparsed(ix.definition))
            if ix.comment is not None:
                cur.execute(sql.SQL("COMMENT ON INDEX {} IS {}").format(qualified(ix.schema, ix.name),
                                                                        sql.Literal(ix.comment)))
            if ix.clustered:
                cur.execute(sql.SQL("ALTER TABLE {} CLUSTER ON {}").format(table, sql.Identifier(ix.name)))
            if ix.replica_identity:
                cur.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY USING INDEX {}").format(
                    table, sql.Identifier(ix.name)))
