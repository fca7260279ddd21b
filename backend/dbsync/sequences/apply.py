"""Carrying out a plan: schema changes first (each isolated), then the moves, in lock-bounded batches.

Standalone, sequences move with setval(seq, v, false), committed batch by batch. Inside a
caller's transaction they move with ALTER SEQUENCE ... RESTART WITH, which a rollback undoes
(setval is never rolled back).
"""

from __future__ import annotations

from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import qualified
from dbsync.catalog.privileges import current_user
from dbsync.catalog.sequences import CREATED_MARK
from dbsync.sequences.plan import PlanItem, SequencePlan
from dbsync.sequences.session import EngineSession, chunks

SCHEMA_ACTIONS = ("sequence_created", "default_restored")


def _ddl_for(it: PlanItem, me: str) -> list[sql.Composable]:
    f, seq = it.feed, it.sequence
    table = qualified(f.schema, f.table)
    stmts: list[sql.Composable] = []
    if it.action == "sequence_created":
        stmts.append(sql.SQL("CREATE SEQUENCE {} AS {}").format(seq.ident, sqltext.type_name(seq.type)))
        # So a later run still sees the old sync's database once some keys are repaired.
        stmts.append(sql.SQL("COMMENT ON SEQUENCE {} IS {}").format(seq.ident, sql.Literal(CREATED_MARK)))
        if it.create.table_owner != me:
            # OWNED BY needs the table's owner on the sequence too.
            stmts.append(sql.SQL("ALTER SEQUENCE {} OWNER TO {}").format(seq.ident,
                                                                        sql.Identifier(it.create.table_owner)))
        stmts.append(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(seq.ident, table, sql.Identifier(f.column)))
        for grantee in it.create.insert_grantees:
            who = sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC")
            stmts.append(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(seq.ident, who))
    if it.action in SCHEMA_ACTIONS:
        stmts.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT nextval({}::regclass)").format(
            table, sql.Identifier(f.column), sql.Literal(seq.label)))
    return stmts


def _apply_schema_changes(session: EngineSession, plans: list[SequencePlan]) -> None:
    cur = session.cur
    me = current_user(cur)
    ddl = [(sp, it) for sp in plans for it in sp.items if it.action in SCHEMA_ACTIONS]
    # Each isolated: one that fails is reported on its column alone.
    for chunk in chunks(ddl, lambda pair: 3, session.budget):
        for sp, it in chunk:
            stmts = _ddl_for(it, me)
            err = session.attempt(lambda s=stmts: [cur.execute(x) for x in s])
            if err and it.action == "sequence_created":
                sp.fail(err, err.sqlstate)  # no sequence: nothing to position
            elif err:
                it.action, it.error, it.error_code, it.value = "error", err, err.sqlstate, None
        session.end_batch()


def _mover(session: EngineSession):
    cur = session.cur
    if session.in_transaction:
        def move(chunk: list[SequencePlan]) -> None:
            cur.execute(sql.SQL("; ").join(
                sql.SQL("ALTER SEQUENCE {} RESTART WITH {}").format(sp.sequence.ident, sql.Literal(sp.value))
                for sp in chunk))
    else:
        def move(chunk: list[SequencePlan]) -> None:
            cur.execute(
                "SELECT count(setval(s::regclass, v, false)) FROM unnest(%s::text[], %s::bigint[]) AS u(s, v)",
                ([sp.sequence.label for sp in chunk], [sp.value for sp in chunk]),
            )
    return move


def apply(session: EngineSession, plans: list[SequencePlan]) -> None:
    _apply_schema_changes(session, plans)
    mover = session.partner or session  # standalone: the session that read the positions, if two did
    move = _mover(mover)
    movers = [sp for sp in plans if sp.move and not sp.error]
    for chunk in chunks(movers, lambda sp: 1, mover.budget):
        if mover.attempt(lambda c=chunk: move(c)) is not None:
            for sp in chunk:
                err = mover.attempt(lambda sp=sp: move([sp]))
                if err:
                    sp.fail(f"cannot move {sp.sequence.label}: {err}", err.sqlstate)
                mover.end_batch()
        mover.end_batch()
