"""check_sequences: the columns whose next INSERT would fail, collide with existing rows, or take
the sequence out of its bounds — and nothing else. A CI gate must not fail on a state that works:
a sequence below its START but past every row is where reset-sequences would not leave it, yet
its next INSERT works, so it is not flagged."""

from __future__ import annotations

from dbsync.catalog import sequences as seqcat
from dbsync.catalog.privileges import insert_grantees, lacking_usage
from dbsync.results import SequenceProblem
from dbsync.sequences.plan import PlanItem, SequencePlan, plan
from dbsync.sequences.session import EngineSession


def _behind(sp: SequencePlan) -> bool:
    """The next value is at or behind the data's extreme: this or a later INSERT collides."""
    if sp.extreme is None or sp.current_next is None:
        return False
    return sp.current_next <= sp.extreme if sp.ascending else sp.current_next >= sp.extreme


def problem(sp: SequencePlan, it: PlanItem) -> str | None:
    """Why this column's next INSERT fails or collides; None when it works."""
    f, seq = it.feed, sp.sequence
    if it.action == "error":
        return it.error
    if it.action == "sequence_created":
        return "primary key has no default and no sequence: an INSERT without the key fails"
    if it.action == "default_restored":
        # Without its default a nullable column takes NULL, which works; a NOT NULL one fails.
        return f"no default: an INSERT without {f.column} fails ({seq.label} is not used)" if f.not_null else None
    if it.action == "reset" and sp.current_next is not None:
        if not seq.min <= sp.current_next <= seq.max:
            return f"next value {sp.current_next} is outside the bounds of {seq.label}: the next INSERT fails"
        if _behind(sp):
            return f"next value {it.previous} is behind the data (should be {it.value})"
    return None


def _inserters_without_usage(session: EngineSession, schemas) -> list[tuple[tuple[str, str, str], str, str]]:
    """(column, role, sequence) for each role granted INSERT on a sequence-fed column's table that
    lacks USAGE on the sequence (the owner needs no grant; PUBLIC grants are not checked)."""
    # An identity column's sequence is used without a privilege check; a default's nextval() is not.
    feeds = [f for f in seqcat.read_feeds(session.cur, schemas)
             if f.comparable and f.has_default and f.kind != "identity"]
    grantees = insert_grantees(session.cur, sorted({f.table_oid for f in feeds}))
    pairs = [(f, role) for f in feeds for role in grantees.get(f.table_oid, []) if role is not None]
    if not pairs:
        return []
    lacking = lacking_usage(session.cur, [(role, f.sequence.oid) for f, role in pairs])
    return [((f.schema, f.table, f.column), role, f.sequence.label)
            for (f, role), missing in zip(pairs, lacking, strict=True) if missing]


def check_sequences(conn, *, schemas: list[str] | None = None) -> list[SequenceProblem]:
    """Columns whose next INSERT would fail or collide with existing rows; [] when all is well.
    That includes an INSERT by a role that may write the table but may not use its sequence.
    Changes nothing."""
    session = EngineSession(conn, None)
    try:
        plans = plan(session, schemas=schemas, tables=None, exact=False, create_missing=True, positions=None)
        items = sorted(((sp, it) for sp in plans for it in sp.items),
                       key=lambda p: (p[1].feed.schema, p[1].feed.table, p[1].feed.column))
        problems: list[SequenceProblem] = []
        by_column: dict[tuple[str, str, str], SequenceProblem] = {}
        for sp, it in items:
            entry = SequenceProblem(**it.result())
            by_column[(it.feed.schema, it.feed.table, it.feed.column)] = entry
            why = problem(sp, it)
            if why:
                problems.append(SequenceProblem(**entry, problem=why))
        for (schema, table, column), role, sequence in _inserters_without_usage(session, schemas):
            entry = by_column.get((schema, table, column)) or SequenceProblem(
                schema=schema, table=table, column=column, sequence=sequence)
            problems.append(SequenceProblem(**entry, problem=(
                f"role {role} may INSERT into {table} but has no USAGE on {sequence}:"
                " its INSERTs fail (GRANT USAGE, SELECT ON SEQUENCE … TO it)")))
        return problems
    finally:
        if not session.in_transaction:
            conn.rollback()
        session.close()
