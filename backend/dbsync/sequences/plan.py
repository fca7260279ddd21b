"""The plan: for each sequence, where its next value must be so that the next INSERT on every
column it feeds succeeds and lands right after the data (rules in the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync.catalog import SEQUENCE_COMPARABLE_TYPES, Feed, MissingKey, Sequence, TableKey, qualified
from dbsync.catalog import sequences as seqcat
from dbsync.catalog.models import UNBOUNDED_TYPES
from dbsync.results import Action, SequenceResult
from dbsync.sequences import session as engine_session
from dbsync.sequences.names import serial_name
from dbsync.sequences.session import Alongside, EngineSession, run_chunked, run_parallel

SEQUENCE_TYPES = {"int2": "smallint", "int4": "integer", "int8": "bigint"}
NO_FLOOR_NOTE = "not a number column: the source's position, no data floor"
UNVERIFIABLE_NOTE = ("integer primary key that no default, identity, owned sequence or trigger feeds: filled by"
                     " the application, or its sequence was lost (check-sequences --source tells)")


@dataclass
class PlanItem:
    feed: Feed
    sequence: Sequence
    previous: int | None = None
    value: int | None = None
    action: Action = "unchanged"
    error: str | None = None
    error_code: str | None = None  # the SQLSTATE behind `error`, where a server error caused it
    create: MissingKey | None = None  # a new (or reused) serial-style sequence for this column
    restore_default: bool = False

    def result(self) -> SequenceResult:
        f = self.feed
        out = SequenceResult(schema=f.schema, table=f.table, column=f.column, sequence=self.sequence.label,
                             kind=f.kind, previous=self.previous, value=self.value, action=self.action,
                             error=self.error)
        if self.error_code:
            out["error_code"] = self.error_code
        if not f.comparable:
            out["note"] = NO_FLOOR_NOTE
        return out


def unverifiable_result(f: Feed) -> SequenceResult:
    return SequenceResult(schema=f.schema, table=f.table, column=f.column, sequence=None, kind="none",
                          previous=None, value=None, action="unverifiable", error=None, note=UNVERIFIABLE_NOTE)


@dataclass
class SequencePlan:
    sequence: Sequence
    items: list[PlanItem] = field(default_factory=list)
    current_next: int | None = None
    extreme: int | None = None  # largest (ascending) or smallest (descending) value in the data
    value: int | None = None
    move: bool = False
    probe: bool = False  # a wrapped CYCLE sequence: check its next value is free
    error: str | None = None

    def fail(self, message: str, code: str | None = None) -> None:
        """Every column of the sequence in error; `code`: the SQLSTATE that caused it."""
        self.error = self.error or message
        for it in self.items:
            it.action, it.error, it.value = "error", it.error or message, None
            it.error_code = it.error_code or code

    @property
    def ascending(self) -> bool:
        return self.sequence.increment > 0


# -- reading what the decision needs ---------------------------------------------------------------

_MAX, _MIN, _CLOSE = sql.SQL("max("), sql.SQL("min("), sql.SQL(")")


def _extreme_expression(sp: SequencePlan, f: Feed) -> sql.Composable:
    agg = sql.SQL("max") if sp.ascending else sql.SQL("min")
    if f.base_type not in UNBOUNDED_TYPES:
        return sql.Composed((_MAX if sp.ascending else _MIN, sql.Identifier(f.column), _CLOSE))
    # NaN, ±Infinity and values beyond bigint can never collide with a sequence value.
    return sql.SQL("{agg}({col}) FILTER (WHERE {col} BETWEEN {lo} AND {hi})").format(
        agg=agg, col=sql.Identifier(f.column), lo=sql.Literal(-(2**63)), hi=sql.Literal(2**63 - 1))


_UNION_ALL, _SELECT, _AS_INT, _AS_NUMERIC_FROM, _DOT = (
    sql.SQL(" UNION ALL "), sql.SQL("SELECT "), sql.SQL("::int, "), sql.SQL("::numeric FROM "), sql.SQL("."))


def _extremes_query(chunk: list[tuple[SequencePlan, Feed]]) -> sql.Composed:
    """`SELECT 0::int, max("id")::numeric FROM "public"."t" UNION ALL …`, one branch per column,
    its position first: composed part by part (SQL.format parses its template on every call,
    which thousands of tables make most of the client's time)."""
    parts: list[sql.Composable] = []
    for i, (sp, f) in enumerate(chunk):
        if i:
            parts.append(_UNION_ALL)
        parts += (_SELECT, sql.Literal(i), _AS_INT, _extreme_expression(sp, f), _AS_NUMERIC_FROM,
                  sql.Identifier(f.schema), _DOT, sql.Identifier(f.table))
    return sql.Composed(parts)


def read_extremes(session: EngineSession, plans: list[SequencePlan], *,
                  then: Callable[[EngineSession], None] | None = None, then_weight: float = 0,
                  alongside: Alongside | None = None) -> None:
    """Largest (ascending) / smallest (descending) value over every column of each sequence.
    `then`, `then_weight`, `alongside`: see session.run_parallel."""
    work = []
    for sp in plans:
        if sp.error:
            continue
        seen_tables = {it.feed.table_oid for it in sp.items}
        for it in sp.items:
            f = it.feed
            if f.comparable and not any(a in seen_tables for a in f.ancestors):  # a parent's max() covers a child
                work.append((sp, f))

    def query(cur, chunk):
        cur.execute(_extremes_query(chunk))
        return cur.fetchall()

    def merge(chunk, rows):
        for i, v in rows:
            if v is None:
                continue
            sp, _ = chunk[i]
            # A fractional extreme rounds towards the data: extreme + increment is then the
            # first whole value past it.
            if sp.ascending:
                v = math.floor(v)
                sp.extreme = v if sp.extreme is None else max(sp.extreme, v)
            else:
                v = math.ceil(v)
                sp.extreme = v if sp.extreme is None else min(sp.extreme, v)

    def fail(w, msg):
        w[0].fail(f"cannot read {w[1].table_label}.{w[1].column}: {msg}", msg.sqlstate)

    run_parallel(session, work, lambda w: w[1].lock_cost, query, merge, fail, then=then, then_weight=then_weight,
                 alongside=alongside)


# A sequence's position read costs about a tenth of a table's max() (pg_get_sequence_data: no
# planning, no index): how read_extremes' split between two connections weighs read_states.
STATE_READ_WEIGHT = 0.1


def read_states(session: EngineSession, plans: list[SequencePlan], *, defer: list | None = None) -> None:
    """Where each sequence stands: the value its next nextval() returns. `defer`: append each
    outcome there (to call later) instead of recording it, for reads made alongside read_extremes
    (its errors come first: a sequence whose table cannot be read keeps that error)."""
    work = [sp for sp in plans if sp.sequence.exists and not sp.error]

    def query(cur, chunk):
        return list(enumerate(seqcat.position_states(cur, [sp.sequence for sp in chunk])))

    def merge(chunk, rows):
        for i, (last, called) in rows:
            sp = chunk[i]
            if sp.error:
                continue
            if last is None:
                sp.fail(f"permission denied: cannot read sequence {sp.sequence.label}")
            else:
                sp.current_next = seqcat.next_value(sp.sequence, last, called)

    def fail(sp, msg):
        if not sp.error:
            sp.fail(f"cannot read sequence {sp.sequence.label}: {msg}", msg.sqlstate)

    if defer is None:
        run_chunked(session, work, lambda sp: 1, query, merge, fail)
    else:
        run_chunked(session, work, lambda sp: 1, query, lambda c, r: defer.append(lambda: merge(c, r)),
                    lambda sp, msg: defer.append(lambda: fail(sp, msg)))


# -- deciding --------------------------------------------------------------------------------------

def _target_value(sp: SequencePlan, *, exact: bool, positions: dict[str, int] | None) -> int:
    seq = sp.sequence
    floor = positions.get(seq.label) if positions else None
    if floor is None:
        floor = seq.start
    if sp.ascending:
        value = floor if sp.extreme is None else max(floor, sp.extreme + seq.increment)
        ahead = sp.current_next is not None and sp.current_next > value
    else:
        value = floor if sp.extreme is None else min(floor, sp.extreme + seq.increment)
        ahead = sp.current_next is not None and sp.current_next < value
    if ahead and not exact:
        value = sp.current_next  # values up to here may have been handed out
    if seq.cycle and not (seq.min <= value <= seq.max):
        # A CYCLE sequence whose data reaches its bound has wrapped: "after the data" means nothing
        # there. It stays at its own (or the source's) position, which must not be a used value.
        value = positions.get(seq.label) if positions and seq.label in positions else sp.current_next
        sp.probe = value is not None
        if value is None:
            value = seq.start
    return value


def bounds_error(sp: SequencePlan, value: int) -> str | None:
    """Why `value` cannot be the sequence's next one: past its bounds, or its columns' types."""
    seq = sp.sequence
    if sp.ascending and value > seq.max:
        return f"next value {value} would exceed MAXVALUE {seq.max} of {seq.label}"
    if not sp.ascending and value < seq.min:
        return f"next value {value} would go below MINVALUE {seq.min} of {seq.label}"
    for it in sp.items:
        limit = SEQUENCE_COMPARABLE_TYPES.get(it.feed.base_type)
        if limit is not None and not (-limit - 1 <= value <= limit):
            return f"next value {value} is out of range for column {it.feed.column} ({it.feed.base_type})"
    return None


def decide(sp: SequencePlan, *, exact: bool, positions: dict[str, int] | None, in_transaction: bool) -> None:
    seq = sp.sequence
    value = _target_value(sp, exact=exact, positions=positions)
    sp.value = value
    sp.move = value != sp.current_next or not seq.exists
    error = bounds_error(sp, value)
    if error is None and sp.move and seq.exists:
        if in_transaction and not seq.is_ours:
            error = f"must own sequence {seq.label} to move it (ALTER SEQUENCE ... RESTART)"
        elif not in_transaction and not (seq.can_update or seq.is_ours):
            error = f"permission denied: setval needs UPDATE on sequence {seq.label}"
    if error:
        sp.fail(error)
        return
    for it in sp.items:
        if it.action != "error":
            _decide_item(sp, it)


def _decide_item(sp: SequencePlan, it: PlanItem) -> None:
    f, seq = it.feed, sp.sequence
    it.value = sp.value
    it.previous = sp.current_next if f.has_default and seq.exists else None
    if it.create:
        if not f.owns_table:
            it.action, it.error = "error", f"must own table {f.table_label} to give it a default"
        elif not seq.exists and not it.create.can_create:
            it.action, it.error = "error", f"needs CREATE on schema {f.schema} to create {seq.label}"
        else:
            it.action = "sequence_created" if not seq.exists else "default_restored"
    elif it.restore_default:
        if f.owns_table:
            it.action = "default_restored"
        else:
            it.action, it.error = "error", f"must own table {f.table_label} to restore its default"
    else:
        it.action = "reset" if sp.move else "unchanged"
    if it.action == "error":
        it.value = None


def probe_wrapped(session: EngineSession, plans: list[SequencePlan]) -> None:
    """A wrapped CYCLE sequence keeps its position; fail it if that value is already taken."""
    for sp in plans:
        columns = [it.feed for it in sp.items if it.feed.comparable]
        if not columns:
            continue
        query = sql.SQL("SELECT ") + sql.SQL(" OR ").join(
            sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {} = {})").format(
                qualified(f.schema, f.table), sql.Identifier(f.column), sql.Literal(sp.value))
            for f in columns)
        found: list = []

        def probe(q=query, into=found):
            session.cur.execute(q)
            into.append(session.cur.fetchone()[0])

        err = session.attempt(probe)
        if err:
            sp.fail(f"cannot check {sp.sequence.label}: {err}", err.sqlstate)
        elif found[0]:
            sp.fail(f"CYCLE sequence {sp.sequence.label} has wrapped and its next value {sp.value}"
                    " is already used: rows must be renumbered or deleted by hand")
    session.end_batch()


# -- the plan --------------------------------------------------------------------------------------

@dataclass
class EnginePlan:
    sequences: list[SequencePlan]
    # Integer primary keys nothing feeds, left alone: filled by the application, or the old
    # sync's loss — the catalog cannot tell which (see old_sync_signature).
    unverifiable: list[Feed] = field(default_factory=list)


def old_sync_signature(cur, feeds: list[Feed], unfed: list[MissingKey]) -> bool:
    """A database as the old sync left it: its integer keys that nothing feeds outnumber its fed
    columns (the seed's staging: 4 to 0; GitLab: about 35 to 800). Columns fed by a sequence
    reset-sequences created for such a key (CREATED_MARK) count with the unfed ones, so a repair
    cut short by a lock timeout is finished by the next run."""
    if not unfed:
        return False
    marked = seqcat.created_here(cur)
    fed = {(f.table_oid, f.attnum) for f in feeds}
    ours = {(f.table_oid, f.attnum) for f in feeds if f.sequence.oid in marked}
    return len(unfed) + len(ours) > len(fed - ours)


def _unfed_keys(cur, schemas, tables, feeds: list[Feed], create_missing: bool | None,
                by_seq: dict[int, SequencePlan]) -> tuple[list[SequencePlan], list[Feed]]:
    """New serial-style sequences for the unfed keys (create_missing=True, or None in the old
    sync's signature), else those keys as unverifiable (None)."""
    if create_missing is False:
        return [], []
    unfed = seqcat.read_missing_keys(cur, fed=feeds)
    missing = seqcat.selected_keys(unfed, schemas, tables)
    if create_missing or old_sync_signature(cur, feeds, unfed):
        return _plan_missing_keys(cur, missing, by_seq), []
    return [], [m.feed for m in missing]


def plan(session: EngineSession, *, schemas: list[str] | None, tables: set[TableKey] | None, exact: bool,
         create_missing: bool | None, positions: dict[str, int] | None,
         restore_defaults: bool = True) -> EnginePlan:
    """create_missing: True creates a sequence for every unfed integer key, None only in the old
    sync's signature (else they are unverifiable), False neither creates nor lists them.
    restore_defaults=False (the sync: prod decides) never gives a column a default."""
    alongside = _sequences_alongside(session)
    try:
        return _plan(session, alongside, schemas=schemas, tables=tables, exact=exact, create_missing=create_missing,
                     positions=positions, restore_defaults=restore_defaults)
    finally:
        if alongside is not None:
            alongside.close()  # unless the reads took it


def _sequences_alongside(session: EngineSession) -> Alongside | None:
    """With enough sequences for two connections (session.PARALLEL_MIN_ITEMS), the second one is
    opened now and reads the sequences' catalog while this one reads the columns'."""
    if session.in_transaction or seqcat.count_sequences(session.cur) < engine_session.PARALLEL_MIN_ITEMS:
        return None

    def read(other: EngineSession) -> dict:
        found = seqcat.read_sequences(other.cur, user_schemas=True)
        other.end_batch()
        return found

    return Alongside(session, read)


def _plan(session: EngineSession, alongside: Alongside | None, *, schemas, tables, exact, create_missing, positions,
          restore_defaults) -> EnginePlan:
    cur = session.cur
    by_seq: dict[int, SequencePlan] = {}
    every_feed = seqcat.read_feeds(cur, sequences=(lambda: alongside.result({})) if alongside else None)
    for f in seqcat.select_feeds(every_feed, schemas, tables):
        # A column whose data has no order (`'X' || nextval('s')`) gets no data floor: the engine
        # moves its sequence only to a position it is given (the sync's: the source's).
        if f.comparable or (positions and f.sequence.label in positions):
            sp = by_seq.setdefault(f.sequence.oid, SequencePlan(f.sequence))
            sp.items.append(PlanItem(f, f.sequence, restore_default=restore_defaults and not f.has_default))
    plans = list(by_seq.values())
    created, unverifiable = _unfed_keys(cur, schemas, tables, every_feed, create_missing, by_seq)
    plans += created
    seqcat.annotate_tree(cur, [it.feed for sp in plans for it in sp.items])
    session.end_batch()

    for sp in plans:
        if sp.sequence.exists and not sp.sequence.can_read:
            sp.fail(f"permission denied: needs SELECT on sequence {sp.sequence.label} to read its position")
        for it in sp.items:
            if not it.feed.can_select:
                sp.fail(f"permission denied: needs SELECT on {it.feed.table_label}.{it.feed.column}")
    # The positions are read alongside the extremes (on the second connection, when there is one)
    # and recorded after them.
    positions_read: list[Callable[[], None]] = []
    read_extremes(session, plans, then=lambda s: read_states(s, plans, defer=positions_read),
                  then_weight=STATE_READ_WEIGHT * sum(sp.sequence.exists and not sp.error for sp in plans),
                  alongside=alongside)
    for record in positions_read:
        record()
    for sp in plans:
        if not sp.error:
            decide(sp, exact=exact, positions=positions, in_transaction=session.in_transaction)
    probe_wrapped(session, [sp for sp in plans if sp.probe and not sp.error])
    return EnginePlan(plans, unverifiable)


def _plan_missing_keys(cur, missing: list[MissingKey], by_seq: dict[int, SequencePlan]) -> list[SequencePlan]:
    if not missing:
        return []
    names = seqcat.relation_names(cur, {m.feed.schema for m in missing})
    existing = {sp.sequence.key: sp for sp in by_seq.values()}
    new_plans = []
    for m in missing:
        f = m.feed
        taken = names[f.schema]
        base = serial_name(f.table, f.column)
        if taken.get(base) == "S":
            # A serial-named sequence that feeds no column yet (the old sync left it unattached).
            sp = existing.get((f.schema, base))
            if sp is None:
                (seq,) = seqcat.read_sequences(cur, name=(f.schema, base)).values()
                sp = existing[seq.key] = SequencePlan(seq)
                new_plans.append(sp)
            sp.items.append(PlanItem(f, sp.sequence, create=m))
            continue
        name, n = base, 0
        while name in taken:
            n += 1
            name = serial_name(f.table, f.column, f"seq{n}")
        taken[name] = "S"  # two tables must not pick the same new name
        seq = Sequence(0, f.schema, name, _quote_qualified(cur, f.schema, name), SEQUENCE_TYPES[f.base_type],
                       1, 1, 1, SEQUENCE_COMPARABLE_TYPES[f.base_type], 1, False, None, True, True, True,
                       exists=False)
        new_plans.append(SequencePlan(seq, [PlanItem(f, seq, create=m)]))
    return new_plans


def _quote_qualified(cur, schema: str, name: str) -> str:
    cur.execute("SELECT format('%%I.%%I', %s::text, %s::text)", (schema, name))
    return cur.fetchone()[0]
