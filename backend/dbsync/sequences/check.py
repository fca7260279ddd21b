"""check_sequences: the columns whose next INSERT would fail, collide with existing rows, or take
the sequence out of its bounds — and nothing else. A CI gate must not fail on a state that works:
a sequence below its START but past every row is where reset-sequences would not leave it, yet
its next INSERT works, so it is not flagged; an integer key nothing feeds may be one the
application fills itself, so it is listed as unverifiable, not flagged (but see check_report)."""

from __future__ import annotations

from dbsync.catalog import Feed
from dbsync.catalog import sequences as seqcat
from dbsync.catalog.privileges import insert_grantees, lacking_usage
from dbsync.catalog.relations import partition_roots
from dbsync.errors import shown_name
from dbsync.results import SequenceCheck, SequenceProblem, UnverifiableKey
from dbsync.sequences.plan import UNVERIFIABLE_NOTE, EnginePlan, PlanItem, SequencePlan, plan
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


def _plan_problems(planned: EnginePlan) -> tuple[list[SequenceProblem], dict[tuple[str, str, str], SequenceProblem]]:
    """What the plan says fails or collides, and every planned column's entry."""
    problems: list[SequenceProblem] = []
    by_column: dict[tuple[str, str, str], SequenceProblem] = {}
    for sp in planned.sequences:
        for it in sp.items:
            entry = SequenceProblem(**it.result())
            by_column[(it.feed.schema, it.feed.table, it.feed.column)] = entry
            why = problem(sp, it)
            if why:
                problems.append(SequenceProblem(**entry, problem=why))
    return problems, by_column


def _feed_levels(feeds: list[Feed], schemas) -> dict[tuple[str, str, str], tuple[int, Feed]]:
    """(schema, table, column) → (2: an INSERT without it takes a sequence's value — default,
    identity, trigger; 1: it only owns a sequence, no default), with the feed that says so."""
    out: dict[tuple[str, str, str], tuple[int, Feed]] = {}
    for f in feeds:
        key, level = (f.schema, f.table, f.column), 2 if f.has_default else 1
        if (not schemas or f.schema in schemas) and level > out.get(key, (0, f))[0]:
            out[key] = (level, f)
    return out


def source_levels(source, schemas=None) -> dict[tuple[str, str, str], tuple[int, Feed]]:
    """How prod feeds each column, read from the catalog in a read-only transaction."""
    source.rollback()
    source.set_session(readonly=True)
    try:
        with source.cursor() as cur:
            return _feed_levels(seqcat.read_feeds(cur, schemas), schemas)
    finally:
        source.rollback()


def _unfed_against_source(session: EngineSession, prod: dict, schemas) -> list[SequenceProblem]:
    """Columns prod feeds that staging does not (or feeds less: an owned sequence without the
    default prod has). A column staging lacks is schema drift, not this check's."""
    staging = _feed_levels(seqcat.read_feeds(session.cur, schemas), schemas)
    short = {key: pf for key, pf in prod.items() if staging.get(key, (0, None))[0] < pf[0]}
    columns = seqcat.existing_columns(session.cur, list(short))
    problems = []
    for key, (level, f) in sorted(short.items()):
        if key not in columns:
            continue
        schema, table, column = key
        if level == 1:
            why = f"prod's {f.sequence.label} is OWNED BY {column}; staging has no sequence for it"
        else:
            fails = "fails" if columns[key] else "takes NULL"
            why = (f"prod fills {column} from {f.sequence.label} ({f.kind}); staging does not:"
                   f" an INSERT without {column} {fails}")
        problems.append(SequenceProblem(schema=schema, table=table, column=column, sequence=f.sequence.label,
                                        kind=f.kind, problem=why))
    return problems


def check_report(conn, *, schemas: list[str] | None = None, source=None,
                 lock_timeout: str | None = None) -> SequenceCheck:
    """Columns whose next INSERT would fail or collide with existing rows (including an INSERT by
    a role that may write the table but may not use its sequence), and the integer keys nothing
    feeds. Changes nothing.

    Without `source`, such a key is `unverifiable` (listed, not a problem) unless the database
    has the old sync's signature, where it is a problem as before. With `source` (a connection to
    prod), prod decides: a column is a problem when prod feeds it and staging does not, or when
    staging's sequence is behind its data; nothing is unverifiable."""
    prod = None if source is None else source_levels(source, schemas)
    session = EngineSession(conn, None, lock_timeout)
    try:
        planned = plan(session, schemas=schemas, tables=None, exact=False, positions=None,
                       create_missing=None if prod is None else False, restore_defaults=prod is None)
        problems, by_column = _plan_problems(planned)
        if prod is not None:
            problems += _unfed_against_source(session, prod, schemas)
        for (schema, table, column), role, sequence in _inserters_without_usage(session, schemas):
            entry = by_column.get((schema, table, column)) or SequenceProblem(
                schema=schema, table=table, column=column, sequence=sequence)
            # reset-sequences cannot fix this: only a grant can.
            grant = f"GRANT USAGE ON SEQUENCE {sequence} TO {shown_name(role)}"
            problems.append(SequenceProblem(**entry, grant=grant, problem=(
                f"role {role} may INSERT into {table} but has no USAGE on {sequence}: its INSERTs fail until {grant}")))
        problems = _once_per_partitioned_table(problems, partition_roots(session.cur))
        problems.sort(key=lambda p: (p["schema"], p["table"], p["column"]))
        unverifiable = [UnverifiableKey(schema=f.schema, table=f.table, column=f.column, note=UNVERIFIABLE_NOTE)
                        for f in planned.unverifiable]
        return SequenceCheck(ok=not problems, problems=problems, unverifiable=unverifiable)
    finally:
        if not session.in_transaction:
            conn.rollback()
        session.close()


def _once_per_partitioned_table(problems: list[SequenceProblem], roots: dict) -> list[SequenceProblem]:
    """A partition inherits its parent's default, so the parent's problem is every partition's
    too: listed once, on the partitioned table (a partition's own problem stays)."""
    on_roots = {(p["schema"], p["table"], p["column"]) for p in problems if (p["schema"], p["table"]) not in roots}
    return [p for p in problems if (p["schema"], p["table"]) not in roots
            or (*roots[(p["schema"], p["table"])], p["column"]) not in on_roots]


def check_sequences(conn, *, schemas: list[str] | None = None, source=None,
                    lock_timeout: str | None = None) -> list[SequenceProblem]:
    """check_report's problems: [] when all is well."""
    return check_report(conn, schemas=schemas, source=source, lock_timeout=lock_timeout)["problems"]
