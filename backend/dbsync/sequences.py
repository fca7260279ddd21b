"""Plan and apply sequence repairs so that the next INSERT on every table succeeds and lands
right after the data.

The plan reads the catalogs (dbsync.catalog), the data's extremes and each sequence's state in a
few set-based queries (chunked so no transaction holds more locks than the lock table allows),
then decides per sequence. Rules:
- the next value clears every column the sequence feeds (shared sequences), including rows in
  partitions and inheritance children (a max() over a parent covers them);
- ascending sequences go past the largest value, descending ones below the smallest; an empty
  table's sequence goes to START; START, MINVALUE, MAXVALUE and INCREMENT are honoured, and a value
  beyond the bounds (or the column type) is an error for that sequence, found while planning;
- standalone, a sequence already ahead of its data is left where it is (values may have been handed
  out) unless exact=True; `positions` (the sync: the source's next values) replaces START as the
  floor, and with exact=True the sequence mirrors it, floored at the data;
- a column that owns a sequence but lost its default gets it back; an integer primary key with no
  default at all gets a serial-style sequence (create_missing);
- a wrapped CYCLE sequence keeps its position unless that value is taken; row-level security is
  off for the reads, so a policy that would hide rows is an error, never a short max().
Applying: standalone it commits in batches and positions with setval(seq, v, false); inside a
caller's transaction it never commits and uses ALTER SEQUENCE ... RESTART WITH, which a rollback
undoes (setval is never rolled back).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from dbsync import catalog
from dbsync.catalog import FedColumn, MissingKey, Sequence
from dbsync.connect import lock_timeout_setting
from dbsync.errors import DbSyncError, pg_message

ACTIONS = ("reset", "unchanged", "default_restored", "sequence_created", "error")
SEQUENCE_TYPES = {"int2": "smallint", "int4": "integer", "int8": "bigint"}
NAMEDATALEN = 64
# Statements per round trip when reading extremes or sequence states: large enough to make 10,000
# tables a handful of queries, small enough to plan quickly.
MAX_PER_QUERY = 1000
LOCK_TIMEOUT_ERROR = "lock timeout"
# Reads of at least this many tables are shared with a second connection (standalone only).
PARALLEL_MIN_ITEMS = 2000
# pg_get_sequence_data() exists from PostgreSQL 18 on; older servers read each sequence relation.
SEQUENCE_DATA_FUNCTION_SINCE = 180000


@dataclass
class PlanItem:
    column: FedColumn
    sequence: Sequence
    previous: int | None = None
    value: int | None = None
    action: str = "unchanged"
    error: str | None = None
    create: MissingKey | None = None  # a new (or reused) serial-style sequence for this column
    restore_default: bool = False

    def as_dict(self) -> dict:
        c = self.column
        return {
            "schema": c.schema,
            "table": c.table,
            "column": c.column,
            "sequence": self.sequence.qualified,
            "kind": c.kind,
            "previous": self.previous,
            "value": self.value,
            "action": self.action,
            "error": self.error,
        }


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

    def fail(self, message: str) -> None:
        self.error = self.error or message
        for it in self.items:
            it.action, it.error, it.value = "error", it.error or message, None


# -- names ------------------------------------------------------------------------------


def _clip(name: str, nbytes: int) -> str:
    return name.encode()[:nbytes].decode("utf-8", "ignore")


def serial_name(table: str, column: str, label: str = "seq") -> str:
    """The name PostgreSQL gives a serial column's sequence (makeObjectName: both parts are
    shortened, the longer first, to fit NAMEDATALEN - 1 bytes)."""
    avail = NAMEDATALEN - 1 - (len(label) + 1) - 1
    n1, n2 = len(table.encode()), len(column.encode())
    while n1 + n2 > avail:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    return "_".join((_clip(table, n1), _clip(column, n2), label))


def _qualified(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _quote_qualified(cur, schema: str, name: str) -> str:
    cur.execute("SELECT format('%%I.%%I', %s::text, %s::text)", (schema, name))
    return cur.fetchone()[0]


# -- planning -----------------------------------------------------------------------------


def _chunks(items: list, cost: Callable[[object], int], budget: int) -> Iterator[list]:
    chunk: list = []
    used = 0
    for it in items:
        c = max(1, cost(it))
        if chunk and (used + c > budget or len(chunk) >= MAX_PER_QUERY):
            yield chunk
            chunk, used = [], 0
        chunk.append(it)
        used += c
    if chunk:
        yield chunk


class _Session:
    """The connection in one of two modes: standalone (the engine commits, in batches) or inside
    the caller's transaction (never commits; savepoints isolate a failing statement)."""

    def __init__(self, conn, in_transaction: bool | None):
        self.conn = conn
        status = conn.info.transaction_status
        if status == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
            raise DbSyncError("the connection's transaction has already failed; roll it back first")
        if in_transaction is None:
            in_transaction = status != psycopg2.extensions.TRANSACTION_STATUS_IDLE
        self.in_transaction = in_transaction
        self._autocommit = conn.autocommit
        if not in_transaction:
            if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.commit()
            conn.autocommit = False
        self.cur = conn.cursor()
        self.server_version = conn.info.server_version
        self.cur.execute("SELECT current_setting('lock_timeout'), current_setting('row_security')")
        self._saved = dict(zip(("lock_timeout", "row_security"), self.cur.fetchone(), strict=True))
        # Row-level security would make max() see only some rows and the sequence land among the
        # rest; off, a query it would filter fails instead, and that column reports the error.
        self._set("row_security", "off")
        if self._saved["lock_timeout"] in ("0", "0ms"):
            self._set("lock_timeout", lock_timeout_setting())
        # After a batch times out, its items are retried one by one with at most a second's wait
        # each: one busy table must not cost LOCK_TIMEOUT twice (the API answers within 30 s).
        self.cur.execute("SELECT current_setting('lock_timeout'), (extract(epoch FROM least("
                         "current_setting('lock_timeout')::interval, interval '1s')) * 1000)::int")
        self.lock_timeout, self.retry_lock_timeout_ms = self.cur.fetchone()
        self.budget = max(64, catalog.lock_capacity(self.cur) // 4)
        self.end_batch()

    def sibling(self) -> _Session | None:
        """A second standalone session on the same database as the same role, for parallel
        reads; None when one cannot be opened (then the work simply stays on this one)."""
        params = dict(self.conn.info.dsn_parameters)
        if self.conn.info.password:
            params["password"] = self.conn.info.password
        try:
            conn = psycopg2.connect(**params)
        except psycopg2.Error:
            return None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, false)", (self.lock_timeout,))
            conn.commit()
            return _Session(conn, False)
        except (psycopg2.Error, DbSyncError):
            conn.close()
            return None

    def _set(self, name: str, value: str) -> None:
        """For the engine's work only: transaction-local inside the caller's transaction, else for
        the session until close() puts the caller's value back."""
        self.cur.execute("SELECT set_config(%s, %s, %s)", (name, value, self.in_transaction))

    def end_batch(self) -> None:
        """Release the locks taken so far (standalone only)."""
        if not self.in_transaction:
            self.conn.commit()

    def attempt(self, fn: Callable[[], object], *, short_lock_wait: bool = False) -> str | None:
        """Run fn; on a database error undo just fn (a savepoint: the batch's earlier work stays)
        and return the message."""
        self.cur.execute("SAVEPOINT dbsync_step")
        try:
            if short_lock_wait:
                self.cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(self.retry_lock_timeout_ms),))
            fn()
            if short_lock_wait:
                self.cur.execute("SELECT set_config('lock_timeout', %s, true)", (self.lock_timeout,))
        except psycopg2.Error as exc:
            self.cur.execute("ROLLBACK TO SAVEPOINT dbsync_step")
            return self.explain(exc)
        self.cur.execute("RELEASE SAVEPOINT dbsync_step")
        return None

    def explain(self, exc: psycopg2.Error) -> str:
        if isinstance(exc, psycopg2.errors.LockNotAvailable):
            return f"{LOCK_TIMEOUT_ERROR} ({self.lock_timeout}): the table or sequence is busy (see LOCK_TIMEOUT)"
        return pg_message(exc)

    def close(self) -> None:
        if not self.conn.closed and (self.conn.info.transaction_status
                                     != psycopg2.extensions.TRANSACTION_STATUS_INERROR):
            for name, value in self._saved.items():
                self._set(name, value)
            if not self.in_transaction:
                self.conn.commit()  # only reads can be pending here: ends the transaction, releases locks
                self.conn.autocommit = self._autocommit
        self.cur.close()


def _read_extremes(session: _Session, plans: list[SequencePlan]) -> None:
    """Largest (ascending) / smallest (descending) value over every column of each sequence."""
    work = []
    for sp in plans:
        if sp.error:
            continue
        seen_tables = {c.column.table_oid for c in sp.items}
        for it in sp.items:
            c = it.column
            if any(a in seen_tables for a in c.ancestors):
                continue  # the parent's max() covers this child's rows
            work.append((sp, c))

    def extreme(sp: SequencePlan, c: FedColumn) -> sql.Composable:
        agg = sql.SQL("max" if sp.sequence.increment > 0 else "min")
        if c.type != "numeric":
            return sql.SQL("{}({})").format(agg, sql.Identifier(c.column))
        # NaN, ±Infinity and values beyond bigint can never collide with a sequence value.
        return sql.SQL("{agg}({col}) FILTER (WHERE {col} BETWEEN {lo} AND {hi})").format(
            agg=agg, col=sql.Identifier(c.column), lo=sql.Literal(-(2**63)), hi=sql.Literal(2**63 - 1))

    def query(cur, chunk):
        parts = [
            sql.SQL("SELECT {}::int, {}::numeric FROM {}").format(
                sql.Literal(i), extreme(sp, c), _qualified(c.schema, c.table))
            for i, (sp, c) in enumerate(chunk)
        ]
        cur.execute(sql.SQL(" UNION ALL ").join(parts))
        return cur.fetchall()

    def merge(chunk, rows):
        for i, v in rows:
            if v is None:
                continue
            sp, _ = chunk[i]
            # A fractional extreme (numeric columns) rounds towards the data: extreme + increment
            # is then the first whole value past it.
            if sp.sequence.increment > 0:
                v = math.floor(v)
                sp.extreme = v if sp.extreme is None else max(sp.extreme, v)
            else:
                v = math.ceil(v)
                sp.extreme = v if sp.extreme is None else min(sp.extreme, v)

    def fail(w, msg):
        w[0].fail(f"cannot read {w[1].qualified_table}.{w[1].column}: {msg}")

    _run_parallel(session, work, lambda w: w[1].lock_cost, query, merge, fail)


def _run_parallel(session: _Session, work: list, cost, query, merge, fail) -> None:
    """_run_chunked on two connections at once when there is enough work (standalone only: a
    caller's transaction is one connection). Each table's max() is the server opening the table
    and its index; a second backend does that on the other core."""
    if session.in_transaction or len(work) < PARALLEL_MIN_ITEMS:
        _run_chunked(session, work, cost, query, merge, fail)
        return
    other = session.sibling()
    if other is None:
        _run_chunked(session, work, cost, query, merge, fail)
        return
    lock = threading.Lock()

    def locked(fn):
        def call(*args):
            with lock:
                fn(*args)
        return call

    half = len(work) // 2
    failure: list[BaseException] = []

    def second_half():
        try:
            _run_chunked(other, work[half:], cost, query, locked(merge), locked(fail))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=second_half, name="dbsync-reads")
    worker.start()
    try:
        _run_chunked(session, work[:half], cost, query, locked(merge), locked(fail))
    finally:
        worker.join()
        other.close()
        other.conn.close()
    if failure:
        raise failure[0]


def _read_states(session: _Session, plans: list[SequencePlan]) -> None:
    """Each sequence's (last_value, is_called), from which its next value follows."""
    work = [sp for sp in plans if sp.sequence.exists and not sp.error]
    if session.server_version >= SEQUENCE_DATA_FUNCTION_SINCE:
        # PostgreSQL 18's pg_get_sequence_data (what pg_dump 18 uses): one function call per
        # sequence instead of a scan per sequence in a 1,000-way UNION ALL.
        def query(cur, chunk):
            cur.execute(
                "SELECT d.last_value, d.is_called FROM unnest(%s::oid[]) WITH ORDINALITY AS u(seq, i),"
                " LATERAL pg_get_sequence_data(u.seq::regclass) AS d ORDER BY u.i",
                ([sp.sequence.oid for sp in chunk],),
            )
            return list(enumerate(cur.fetchall()))
    else:
        def query(cur, chunk):
            parts = [
                sql.SQL("SELECT last_value, is_called FROM {}").format(
                    _qualified(sp.sequence.schema, sp.sequence.name))
                for sp in chunk
            ]
            cur.execute(sql.SQL(" UNION ALL ").join(parts))
            return list(enumerate(cur.fetchall()))

    def merge(chunk, rows):
        for i, (last, called) in rows:
            sp = chunk[i]
            seq = sp.sequence
            if last is None:
                sp.fail(f"permission denied: cannot read sequence {seq.qualified}")
                continue
            sp.current_next = int(last) + seq.increment if called else int(last)
            if seq.cycle and not (seq.minvalue <= sp.current_next <= seq.maxvalue):
                sp.current_next = seq.minvalue if seq.increment > 0 else seq.maxvalue  # where it wraps to

    _run_chunked(session, work, lambda sp: 1, query, merge,
                 lambda sp, msg: sp.fail(f"cannot read sequence {sp.sequence.qualified}: {msg}"))


def _run_chunked(session, work, cost, query, merge, fail) -> None:
    """Set-based reads in lock-bounded chunks; a chunk that fails is retried one by one so the
    error lands on the item that caused it."""
    def run(chunk, into: list, short_lock_wait: bool = False):
        return session.attempt(lambda: into.extend(query(session.cur, chunk)), short_lock_wait=short_lock_wait)

    for chunk in _chunks(work, cost, session.budget):
        rows: list = []
        chunk_error = run(chunk, rows)
        if chunk_error is None:
            merge(chunk, rows)
        else:
            for w in chunk:
                one: list = []
                err = run([w], one, short_lock_wait=chunk_error.startswith(LOCK_TIMEOUT_ERROR))
                if err is None:
                    merge([w], one)
                else:
                    fail(w, err)
                session.end_batch()
        session.end_batch()


def _decide(sp: SequencePlan, *, exact: bool, positions: dict[str, int] | None, in_transaction: bool) -> None:
    seq = sp.sequence
    inc = seq.increment
    floor = positions.get(seq.qualified) if positions else None
    if floor is None:
        floor = seq.start
    if inc > 0:
        value = floor if sp.extreme is None else max(floor, sp.extreme + inc)
        ahead = sp.current_next is not None and sp.current_next > value
    else:
        value = floor if sp.extreme is None else min(floor, sp.extreme + inc)
        ahead = sp.current_next is not None and sp.current_next < value
    if ahead and not exact:
        value = sp.current_next  # values up to here may have been handed out
    if seq.cycle and not (seq.minvalue <= value <= seq.maxvalue):
        # A CYCLE sequence whose data reaches its bound has wrapped: "after the data" means nothing
        # there. It stays at its own (or the source's) position, which must not be a used value.
        value = positions.get(seq.qualified) if positions and seq.qualified in positions else sp.current_next
        sp.probe = value is not None
        if value is None:
            value = seq.start
    sp.value = value
    sp.move = value != sp.current_next or not seq.exists
    if inc > 0 and value > seq.maxvalue:
        sp.fail(f"next value {value} would exceed MAXVALUE {seq.maxvalue} of {seq.qualified}")
    elif inc < 0 and value < seq.minvalue:
        sp.fail(f"next value {value} would go below MINVALUE {seq.minvalue} of {seq.qualified}")
    for it in sp.items:
        limit = catalog.INTEGER_TYPES.get(it.column.type)
        if limit is not None and not (-limit - 1 <= value <= limit):
            sp.fail(f"next value {value} is out of range for column {it.column.column} ({it.column.type})")
    if sp.error:
        return
    if sp.move and seq.exists:
        if in_transaction and not seq.owned:
            sp.fail(f"must own sequence {seq.qualified} to move it (ALTER SEQUENCE ... RESTART)")
        elif not in_transaction and not (seq.can_update or seq.owned):
            sp.fail(f"permission denied: setval needs UPDATE on sequence {seq.qualified}")
    for it in sp.items:
        if it.action == "error":
            continue
        it.value = value
        it.previous = sp.current_next if it.column.has_default and seq.exists else None
        if it.create:
            if not it.column.owns_table:
                it.action, it.error = "error", f"must own table {it.column.qualified_table} to give it a default"
            elif not seq.exists and not it.create.can_create:
                it.action, it.error = "error", f"needs CREATE on schema {it.column.schema} to create {seq.qualified}"
            else:
                it.action = "sequence_created" if not seq.exists else "default_restored"
        elif it.restore_default:
            if it.column.owns_table:
                it.action = "default_restored"
            else:
                it.action, it.error = "error", f"must own table {it.column.qualified_table} to restore its default"
        else:
            it.action = "reset" if sp.move else "unchanged"
        if it.action == "error":
            it.value = None


def _plan(session: _Session, *, schemas, tables, exact, create_missing, positions) -> list[SequencePlan]:
    cur = session.cur
    columns = catalog.read_fed_columns(cur, schemas, tables)
    by_seq: dict[int, SequencePlan] = {}
    for c in columns:
        sp = by_seq.setdefault(c.sequence.oid, SequencePlan(c.sequence))
        sp.items.append(PlanItem(c, c.sequence, restore_default=not c.has_default))
    plans = list(by_seq.values())
    if create_missing:
        plans += _plan_missing_keys(cur, schemas, tables, by_seq)
    catalog.annotate_tree(cur, [it.column for sp in plans for it in sp.items])
    session.end_batch()

    for sp in plans:
        if sp.sequence.exists and not sp.sequence.can_read:
            sp.fail(f"permission denied: needs SELECT on sequence {sp.sequence.qualified} to read its position")
        for it in sp.items:
            if not it.column.can_select:
                sp.fail(f"permission denied: needs SELECT on {it.column.qualified_table}.{it.column.column}")
    _read_extremes(session, plans)
    _read_states(session, plans)
    for sp in plans:
        if not sp.error:
            _decide(sp, exact=exact, positions=positions, in_transaction=session.in_transaction)
    _probe_wrapped(session, [sp for sp in plans if sp.probe and not sp.error])
    return plans


def _probe_wrapped(session: _Session, plans: list[SequencePlan]) -> None:
    """A wrapped CYCLE sequence keeps its position; fail it if that value is already taken."""
    for sp in plans:
        query = sql.SQL("SELECT ") + sql.SQL(" OR ").join(
            sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {} = {})").format(
                _qualified(it.column.schema, it.column.table), sql.Identifier(it.column.column),
                sql.Literal(sp.value))
            for it in sp.items)
        found: list = []

        def probe(q=query, into=found):
            session.cur.execute(q)
            into.append(session.cur.fetchone()[0])

        err = session.attempt(probe)
        if err:
            sp.fail(f"cannot check {sp.sequence.qualified}: {err}")
        elif found[0]:
            sp.fail(f"CYCLE sequence {sp.sequence.qualified} has wrapped and its next value {sp.value}"
                    " is already used: rows must be renumbered or deleted by hand")
    session.end_batch()


def _plan_missing_keys(cur, schemas, tables, by_seq: dict[int, SequencePlan]) -> list[SequencePlan]:
    missing = catalog.read_missing_keys(cur, schemas, tables)
    if not missing:
        return []
    names = catalog.relation_names(cur, {m.column.schema for m in missing})
    existing_seqs = {(sp.sequence.schema, sp.sequence.name): sp for sp in by_seq.values()}
    new_plans = []
    for m in missing:
        c = m.column
        taken = names[c.schema]
        base = serial_name(c.table, c.column)
        item = PlanItem(c, None, create=m)  # type: ignore[arg-type]
        if taken.get(base) == "S":
            sp = existing_seqs.get((c.schema, base))
            if sp is None:
                sp = _existing_sequence_plan(cur, c.schema, base)
                existing_seqs[(c.schema, base)] = sp
                new_plans.append(sp)
            item.sequence = sp.sequence
            sp.items.append(item)
            continue
        name, n = base, 0
        while name in taken:
            n += 1
            name = serial_name(c.table, c.column, f"seq{n}")
        taken[name] = "S"  # two tables must not pick the same new name
        typ = SEQUENCE_TYPES[c.type]
        seq = Sequence(0, c.schema, name, _quote_qualified(cur, c.schema, name), typ, 1, 1, 1,
                       catalog.INTEGER_TYPES[c.type], True, True, True, exists=False)
        item.sequence = seq
        new_plans.append(SequencePlan(seq, [item]))
    return new_plans


def _existing_sequence_plan(cur, schema: str, name: str) -> SequencePlan:
    """A serial-named sequence that feeds no column yet (the old sync left it unattached)."""
    cur.execute(
        "SELECT s.oid, quote_ident(n.nspname) || '.' || quote_ident(s.relname), format_type(ps.seqtypid, NULL),"
        " ps.seqstart,"
        " ps.seqincrement, ps.seqmin, ps.seqmax, has_sequence_privilege(s.oid, 'SELECT'),"
        " has_sequence_privilege(s.oid, 'UPDATE'), pg_has_role(s.relowner, 'USAGE'), ps.seqcycle"
        " FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace JOIN pg_sequence ps ON ps.seqrelid = s.oid"
        " WHERE n.nspname = %s AND s.relname = %s",
        (schema, name),
    )
    oid, q, typ, start, inc, smin, smax, r, u, o, cycle = cur.fetchone()
    return SequencePlan(Sequence(oid, schema, name, q, typ, int(start), int(inc), int(smin), int(smax), r, u, o,
                                 cycle))


# -- applying -----------------------------------------------------------------------------


def _ddl_for(it: PlanItem, current_user: str) -> list[sql.Composable]:
    c, seq = it.column, it.sequence
    qseq = _qualified(seq.schema, seq.name)
    qtable = _qualified(c.schema, c.table)
    stmts: list[sql.Composable] = []
    if it.action == "sequence_created":
        stmts.append(sql.SQL("CREATE SEQUENCE {} AS {}").format(qseq, sql.SQL(seq.type)))
        if it.create.table_owner != current_user:
            # OWNED BY needs the table's owner on the sequence too.
            stmts.append(sql.SQL("ALTER SEQUENCE {} OWNER TO {}").format(qseq, sql.Identifier(it.create.table_owner)))
        stmts.append(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(qseq, qtable, sql.Identifier(c.column)))
        for grantee in it.create.insert_grantees:
            who = sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC")
            stmts.append(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(qseq, who))
    if it.action in ("sequence_created", "default_restored"):
        stmts.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT nextval({}::regclass)").format(
            qtable, sql.Identifier(c.column), sql.Literal(seq.qualified)))
    return stmts


def _apply(session: _Session, plans: list[SequencePlan]) -> None:
    cur = session.cur
    cur.execute("SELECT current_user")
    current_user = cur.fetchone()[0]
    ddl = [(sp, it) for sp in plans for it in sp.items if it.action in ("sequence_created", "default_restored")]
    # Schema changes first, each isolated: one that fails is reported on its column alone.
    for chunk in _chunks(ddl, lambda pair: 3, session.budget):
        for sp, it in chunk:
            stmts = _ddl_for(it, current_user)
            err = session.attempt(lambda s=stmts: [cur.execute(x) for x in s])
            if err and it.action == "sequence_created":
                sp.fail(err)  # no sequence: nothing to position
            elif err:
                it.action, it.error, it.value = "error", err, None
        session.end_batch()

    movers = [sp for sp in plans if sp.move and not sp.error]
    if session.in_transaction:
        def move(chunk):
            cur.execute(sql.SQL("; ").join(
                sql.SQL("ALTER SEQUENCE {} RESTART WITH {}").format(
                    _qualified(sp.sequence.schema, sp.sequence.name), sql.Literal(sp.value))
                for sp in chunk))
    else:
        def move(chunk):
            cur.execute(
                "SELECT count(setval(s::regclass, v, false)) FROM unnest(%s::text[], %s::bigint[]) AS u(s, v)",
                ([sp.sequence.qualified for sp in chunk], [sp.value for sp in chunk]),
            )
    for chunk in _chunks(movers, lambda sp: 1, session.budget):
        if session.attempt(lambda c=chunk: move(c)) is not None:
            for sp in chunk:
                err = session.attempt(lambda sp=sp: move([sp]))
                if err:
                    sp.fail(f"cannot move {sp.sequence.qualified}: {err}")
                session.end_batch()
        session.end_batch()


# -- the API ------------------------------------------------------------------------------


def _items(plans: Iterable[SequencePlan]) -> list[dict]:
    out = [it.as_dict() for sp in plans for it in sp.items]
    out.sort(key=lambda d: (d["schema"], d["table"], d["column"]))
    return out


def plan_sequences(conn, *, schemas: list[str] | None = None, tables: Iterable[tuple[str, str]] | None = None,
                   exact: bool = False, create_missing: bool = True, positions: dict[str, int] | None = None,
                   in_transaction: bool | None = None) -> list[dict]:
    """What reset_sequences would do, changing nothing."""
    return reset_sequences(conn, dry_run=True, schemas=schemas, tables=tables, exact=exact,
                           create_missing=create_missing, positions=positions, in_transaction=in_transaction)


def reset_sequences(conn, *, dry_run: bool = False, schemas: list[str] | None = None,
                    tables: Iterable[tuple[str, str]] | None = None, exact: bool = False,
                    create_missing: bool = True, positions: dict[str, int] | None = None,
                    in_transaction: bool | None = None) -> list[dict]:
    """Repair every sequence-fed column; one dict per column (see the module docstring).

    `schemas` / `tables` ((schema, table) pairs) limit the work to the sequences feeding those
    tables (each with every column it feeds). in_transaction=None detects the mode: a connection
    inside a transaction is the caller's transaction (nothing is committed, sequences move
    transactionally); an idle one is standalone.
    """
    session = _Session(conn, in_transaction)
    try:
        plans = _plan(session, schemas=schemas, tables=None if tables is None else set(tables), exact=exact,
                      create_missing=create_missing, positions=positions)
        if not dry_run:
            _apply(session, plans)
        elif not session.in_transaction:
            conn.rollback()
        return _items(plans)
    except psycopg2.Error as exc:
        if not session.in_transaction:
            conn.rollback()
        raise DbSyncError(f"sequence repair failed: {session.explain(exc)}") from None
    finally:
        session.close()


def check_sequences(conn, *, schemas: list[str] | None = None) -> list[dict]:
    """Columns whose next INSERT would fail or collide with existing rows; [] when all is well.
    That includes an INSERT by a role that may write the table but may not use its sequence."""
    plan = plan_sequences(conn, schemas=schemas)
    problems = []
    for d in plan:
        if d["action"] == "unchanged":
            continue
        if d["action"] == "error":
            d["problem"] = d["error"]
        elif d["action"] == "sequence_created":
            d["problem"] = "primary key has no default and no sequence: an INSERT without the key fails"
        elif d["action"] == "default_restored":
            d["problem"] = f"no default: an INSERT without {d['column']} fails ({d['sequence']} is not used)"
        else:
            d["problem"] = f"next value {d['previous']} is behind the data (should be {d['value']})"
        problems.append(d)
    by_column = {(d["schema"], d["table"], d["column"]): d for d in plan}
    for (schema, table, column), role, sequence in _inserters_without_usage(conn, schemas):
        d = dict(by_column.get((schema, table, column)) or {"schema": schema, "table": table, "column": column,
                                                             "sequence": sequence})
        d["problem"] = (f"role {role} may INSERT into {table} but has no USAGE on {sequence}:"
                        " its INSERTs fail (GRANT USAGE, SELECT ON SEQUENCE … TO it)")
        problems.append(d)
    return problems


def _inserters_without_usage(conn, schemas) -> list[tuple[tuple[str, str, str], str, str]]:
    """(column, role, sequence) for each role granted INSERT on a sequence-fed column's table that
    lacks USAGE on the sequence (the owner needs no grant; PUBLIC grants are not checked)."""
    session = _Session(conn, None)
    try:
        # An identity column's sequence is used without a privilege check; a default's nextval() is not.
        columns = [c for c in catalog.read_fed_columns(session.cur, schemas)
                   if c.has_default and c.kind != "identity"]
        grantees = catalog.insert_grantees(session.cur, sorted({c.table_oid for c in columns}))
        pairs = [(c, role) for c in columns for role in grantees.get(c.table_oid, []) if role is not None]
        if not pairs:
            return []
        session.cur.execute(
            "SELECT NOT has_sequence_privilege(u.role, u.seq, 'USAGE')"
            " FROM unnest(%s::text[], %s::oid[]) WITH ORDINALITY AS u(role, seq, i) ORDER BY u.i",
            ([role for _, role in pairs], [c.sequence.oid for c, _ in pairs]),
        )
        lacking = [row[0] for row in session.cur.fetchall()]
        return [((c.schema, c.table, c.column), role, c.sequence.qualified)
                for (c, role), missing in zip(pairs, lacking, strict=True) if missing]
    finally:
        session.close()


def read_positions(conn, *, schemas: list[str] | None = None, tables: Iterable[tuple[str, str]] | None = None,
                   in_transaction: bool | None = None) -> dict[str, int]:
    """The next value of each sequence feeding a column (of `tables`, if given), keyed like the
    plan's `sequence`: what the sync passes back as `positions`. Runs in the caller's transaction
    if there is one (the sync's source snapshot)."""
    session = _Session(conn, in_transaction)
    try:
        fed = catalog.read_fed_columns(session.cur, schemas, None if tables is None else set(tables))
        plans = [SequencePlan(seq) for seq in {c.sequence.oid: c.sequence for c in fed}.values()]
        unreadable = [sp.sequence.qualified for sp in plans if not sp.sequence.can_read]
        if unreadable:
            raise DbSyncError(f"needs SELECT on sequence(s) {', '.join(unreadable[:5])}")
        _read_states(session, plans)
        return {sp.sequence.qualified: sp.current_next for sp in plans if sp.current_next is not None}
    finally:
        session.close()
