"""Key ranges that both servers summarise, so that the comparison skips the ranges that agree.

For a key whose leading column is an integer, rows fall into ranges `k0 >> shift` of about
RANGE_ROWS keys each. Prod summarises every range in one scan (inside the snapshot): its row
count, the XOR of a 64-bit hash of each row's key, and how many of its rows were written since
the last sync. Staging summarises its own rows the same way, counting in the keys of prod's
recent rows (already fetched, so already accounted for) and marking ranges that staging wrote
to since the last sync. A range whose summaries agree holds the same keys on both sides (but for
a 2^-64 chance) and nothing staging changed, so only the others are compared key by key:
changes spread thin across a table touch a few percent of its ranges, and prod sends those
ranges' keys instead of every key.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
import threading
import time
from dataclasses import dataclass

from psycopg2 import sql

from dbsync.sync.budget import BudgetExceeded
from dbsync.sync.copy import SourceCopyError
from dbsync.sync.link import Link
from dbsync.sync.units import Unit

# Keys per range, about: few enough that a range holding one change holds few keys, many enough
# that the summaries stay a small fraction of the keys.
RANGE_ROWS = 16
# Above this share of ranges differing, prod sends every key instead (the list costs more).
MAX_RANGE_SHARE = 0.5
# Ranges named in one statement to prod (their numbers are written into its SQL text).
MAX_RANGES = 200_000
_INTEGERS = ("smallint", "integer", "bigint")


@dataclass
class Ranges:
    """How one table's keys are cut: the leading column's value shifted right by `shift`."""

    column: str
    shift: int
    span: int = 0  # keys from prod's lowest to its highest, when the cut was planned
    count: int = 0  # ranges prod has rows in
    differing: int = 0  # ranges compared key by key
    target_rows: int | None = None  # staging's rows before the sync, from its summary
    exact: bool = False  # a range's keys as a bitmap, one bit per key (dbsync.sync.keysets)

    def of(self, alias: str | None = None) -> sql.Composable:
        return sql.SQL("({}::bigint >> {})").format(self._column(alias), sql.Literal(self.shift))

    def bit(self, alias: str | None = None) -> sql.Composable:
        """The key's own bit in its range's bitmap (exact ranges: 64 keys, one bigint)."""
        return sql.SQL("(1::bigint << ({}::bigint & 63)::int)").format(self._column(alias))

    def _column(self, alias: str | None) -> sql.Identifier:
        return sql.Identifier(alias, self.column) if alias else sql.Identifier(self.column)

    @property
    def groups(self) -> int:
        """How many ranges a summary has, at most (about: keys written since come in too)."""
        return (self.span >> self.shift) + 1

    @property
    def restricts(self) -> bool:
        """Whether comparing only the differing ranges beats comparing every key."""
        return self.differing <= min(MAX_RANGES, MAX_RANGE_SHARE * self.count)


def hash64(items: list[sql.Composable], fast: bool) -> sql.Composable:
    """A 64-bit hash of a row of `items`, computed alike by both servers: between servers of one
    major version the internal hash_record_extended (several times cheaper); otherwise the first
    64 bits of the md5 of the row's text, which every version writes alike (both sessions pin the
    output settings)."""
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(items))
    if fast:
        return sql.SQL("hash_record_extended({}, 0)").format(row)
    return sql.SQL("('x' || left(md5({}::text), 16))::bit(64)::bigint").format(row)


# Text-like values are hashed in the "C" collation, so that a nondeterministic collation's equal
# but different strings still hash apart (as the copy would write them differently).
_TEXT_LIKE = re.compile(r"text|character varying(\(\d+\))?|character\(\d+\)")
# What a NULL's hash is: a constant (a value hashing to it is a 2^-64 chance).
_NULL_HASH = sql.Literal(-7046029254386353131)
_TEXT_OID, _VARCHAR_OID = 25, 1043
# Each type's extended hash function (its default hash operator class's support function 2, what
# hash_record_extended calls), by server version: the functions differ between majors.
_HASH_FUNCTIONS = sql.SQL(
    "SELECT oc.opcintype::int, p.proname FROM pg_catalog.pg_opclass oc"
    " JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'hash'"
    " JOIN pg_catalog.pg_amproc ap ON ap.amprocfamily = oc.opcfamily AND ap.amproclefttype = oc.opcintype"
    "  AND ap.amprocrighttype = oc.opcintype AND ap.amprocnum = 2"
    " JOIN pg_catalog.pg_proc p ON p.oid = ap.amproc"
    " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'pg_catalog'"
    " WHERE oc.opcdefault AND p.proargtypes[0] = oc.opcintype")  # callable on the type itself
_hash_functions: dict[int, dict[int, str]] = {}
def _functions(conn) -> dict[int, str]:
    version = conn.info.server_version
    if version not in _hash_functions:
        with conn.cursor() as cur:
            cur.execute(_HASH_FUNCTIONS)
            _hash_functions[version] = dict(cur.fetchall())
    return _hash_functions[version]


def row_hash(link: Link, unit: Unit, items: list[sql.Composable], fast: bool) -> sql.Composable:
    """hash64 of a row of `items` (unit.columns' values, in order). Between servers of one major
    version, where every column's type has a hash function: the columns' own hash functions, each
    column's hash seeding the next's (about a third cheaper than hash_record_extended, and a chain,
    so two rows swapping a value still hash apart). A column that may be NULL on either side, or is
    masked, is hashed on its own first (each value written once in the SQL, so evaluated once),
    NULL as a constant, and that 64-bit hash joins the chain through the seed (a hash function's
    int8 argument is folded to 32 bits; its seed is not)."""
    if not fast:
        return hash64(items, fast)
    functions, chain = _functions(link.source), sql.Literal(0)
    for i, (item, name) in enumerate(zip(items, unit.columns, strict=True)):
        column, target = unit.source.columns[name], unit.target.columns.get(name)
        masked = unit.masked is not None and name in unit.masked.expressions
        if column.not_null and target is not None and target.not_null and not masked:
            hashed = _typed_hash(functions, column, item, chain)
            if hashed is None:
                return hash64(items, fast)
            chain = hashed
        else:
            alone = _typed_hash(functions, column, item, sql.Literal(i))
            if alone is None:
                return hash64(items, fast)
            chain = sql.SQL("pg_catalog.hashint8extended(0, {} # coalesce({}, {}))").format(chain, alone, _NULL_HASH)
    return chain


# Types whose own hash folds their 64 bits to 32 (hashint8extended and the timestamp and time
# hashes built on it: 1 and 2^32 hash alike under every seed). A bigint's high half is hashed
# too; a timestamp's or a time's epoch too, as a double (exact to the microsecond within 142
# years of 1970; beyond, the folded hash still tells most apart) — a third of a numeric's cost.
_EPOCH_HASHED = re.compile(r"timestamp(\(\d\))? with(out)? time zone|time(\(\d\))? without time zone")


def _typed_hash(functions: dict[int, str], column, value: sql.Composable,
                seed: sql.Composable) -> sql.Composable | None:
    """The column's value hashed by its type's own function, seeded; None without one."""
    function = functions.get(_TEXT_OID if column.type_oid == _VARCHAR_OID else column.type_oid)
    if function is None:
        return None
    if _TEXT_LIKE.fullmatch(column.type):
        value = sql.SQL("({}) COLLATE \"C\"").format(value)
    hashed = sql.SQL("{}({}, {})").format(sql.Identifier("pg_catalog", function), value, seed)
    if column.type == "bigint":
        hashed = sql.SQL("pg_catalog.hashint8extended(({}) >> 32, {})").format(value, hashed)
    elif _EPOCH_HASHED.fullmatch(column.type):
        hashed = sql.SQL("pg_catalog.hashfloat8extended(date_part('epoch', {}), {})").format(value, hashed)
    return hashed


def key_hash(unit: Unit, key: tuple[str, ...], fast: bool, alias: str | None = None) -> sql.Composable:
    """hash64 of a cut key (its leading column an integer). Between servers of one major version,
    a key of integers is hashed column by column, each column's hash seeding the next's (cheaper
    than a record's, and unlike an XOR of the columns' hashes it tells (1, 7), (2, 5) from (1, 5),
    (2, 7) when a range's key hashes are XORed together), a bigint's high half too (its hash
    folds it to 32 bits); key columns are never NULL."""
    columns = [sql.Identifier(alias, k) if alias else sql.Identifier(k) for k in key]
    if not fast or any(unit.source.columns[k].type not in _INTEGERS for k in key):
        return hash64(columns, fast)
    hashed: sql.Composable = sql.Literal(0)
    for name, column in zip(key, columns, strict=True):
        hashed = sql.SQL("hashint8extended({}::bigint, {})").format(column, hashed)
        if unit.source.columns[name].type == "bigint":
            hashed = sql.SQL("hashint8extended({} >> 32, {})").format(column, hashed)
    return hashed


_BOUNDS = sql.SQL("SELECT min({k})::numeric, max({k})::numeric,"
                  " (SELECT reltuples FROM pg_class WHERE oid = {oid}) FROM {t}")


def plan_ranges(link: Link, unit: Unit, key: tuple[str, ...], *, from_: sql.Composable,
                exact: bool = False) -> Ranges | None:
    """Ranges of about RANGE_ROWS keys, from the leading column's bounds (an index's two ends)
    and the table's estimated rows; None when the leading column is not an integer. With
    `exact`, a key of one integer column whose keys are dense enough gets exact ranges instead:
    64 keys each, the range's keys a bitmap (dbsync.sync.keysets)."""
    column = key[0]
    if unit.source.columns[column].type not in _INTEGERS:
        return None
    with link.source.cursor() as cur:
        cur.execute(_BOUNDS.format(k=sql.Identifier(column), oid=sql.Literal(unit.source.oid), t=from_))
        low, high, estimate = cur.fetchone()
    if low is None:
        return None  # prod's table is empty: nothing to cut
    span = int(high - low) + 1
    if exact and len(key) == 1 and _dense(span, estimate):
        return Ranges(column, EXACT_SHIFT, span=span, exact=True)
    return Ranges(column, range_shift(low, high, estimate), span=span)


# An exact range covers 2^6 = 64 key values, a bigint's bits.
EXACT_SHIFT = 6
# Keys per key value, at least, for exact ranges (8 keys a range on average): sparser keys would
# make more ranges, each summarised, than the RANGE_ROWS-key ranges of hashed keys.
EXACT_DENSITY = 1 / 8


def _dense(span: int, estimate: float | None) -> bool:
    """Whether keys fill enough of their span for exact ranges (unknown estimate: taken as dense,
    as range_shift does)."""
    return not estimate or estimate <= 0 or estimate / span >= EXACT_DENSITY


def range_shift(low, high, estimate: float | None) -> int:
    """The right shift that cuts keys from `low` to `high` into ranges of about RANGE_ROWS rows,
    given the planner's row estimate (-1 or 0 when unknown: the keys are taken as dense)."""
    span = float(high - low) + 1
    rows = estimate if estimate and estimate > 0 else span
    return max(0, min(62, round(math.log2(max(1.0, span / rows * RANGE_ROWS)))))


# A summary's hash aggregate (or a join of two summaries) keeps about this much per range. The
# planner takes every key for a range of its own (it cannot see that `k >> shift` folds keys
# together) and a temporary table's size for a guess, so with the default work_mem it planned to
# spill the table's rows to disk or to sort the whole table: those statements get memory for the
# ranges there are, within a cap, and no sort — neither a summary nor a join of two (summaries come
# unsorted; sorting both for a merge join took twice as long as a hash join).
_BYTES_PER_RANGE = 256
# On a live prod a summary must stay a modest guest: past this the aggregate spills, as before.
_MAX_WORK_MEM_KB = 64 * 1024


@contextlib.contextmanager
def room_for(groups: int, *connections, sort: bool = True):
    """Inside: each connection's work_mem fits `groups` ranges (never lowered), and with
    sort=False sorting is off; after, both as they were. Transaction-local: should the block
    fail, rolling back (to a savepoint or the whole run) puts them back."""
    wanted = min(_MAX_WORK_MEM_KB, groups * _BYTES_PER_RANGE // 1024)
    saved = []
    for conn in connections:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('work_mem'), current_setting('enable_sort'),"
                        " pg_size_bytes(current_setting('work_mem')) / 1024")
            work_mem, enable_sort, current_kb = cur.fetchone()
            saved.append((conn, work_mem, enable_sort))
            cur.execute("SELECT set_config('work_mem', %s, true), set_config('enable_sort', %s, true)",
                        (f"{max(wanted, int(current_kb))}kB", enable_sort if sort else "off"))
    yield
    for conn, work_mem, enable_sort in saved:
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('work_mem', %s, true), set_config('enable_sort', %s, true)",
                        (work_mem, enable_sort))


# `recent`: how many of the range's rows are recent; in an exact range, which (a bitmap, as `h`).
_SUMMARY = sql.SQL("SELECT {b} AS b, count(*) AS n, bit_xor({h}) AS h, {recent} AS recent FROM {t}{where} GROUP BY 1")
_RECENT_COUNT = sql.SQL("count(*) FILTER (WHERE {})")
_RECENT_BITS = sql.SQL("bit_xor({}) FILTER (WHERE {})")
_SUMMARY_TABLE = sql.SQL("CREATE TEMP TABLE {} (b bigint, n bigint, h bigint, recent bigint) ON COMMIT DROP")
# A temporary table on staging, made from a query (the comparison's intermediate results).
MATERIALISED = sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS {}")
_TOTALS = sql.SQL("SELECT count(*), coalesce(sum({recent}), 0), coalesce(sum(n), 0),"
                  " (SELECT coalesce(sum(n), 0) FROM {staging}) FROM {prod}")
# The bits set in a bigint: bit_count from PostgreSQL 14 on (a sixth of the cost), before it
# through the bits' text.
_ONES = sql.SQL("bit_count(recent::bit(64))")
_ONES_BEFORE_14 = sql.SQL("length(replace(recent::bit(64)::text, '0', ''))")
# Prod's summary is read into a spool while staging computes its own, so that both servers scan
# at once; held in memory up to this size, in a temporary file beyond it.
SPOOL_MEMORY = 32 * 2**20


@dataclass
class Side:
    """What one server summarises: its table (`s` on staging), which rows, the hash of each row
    and which rows count as recent."""

    table: sql.Composable
    where: sql.Composable
    hash: sql.Composable
    recent: sql.Composable


def summarise(link: Link, ranges: Ranges, names: tuple[sql.Identifier, sql.Identifier], prod: Side,
              staging: Side, read_ahead=None, staged_ahead=None) -> tuple[int, int]:
    """Both summaries into temporary tables on staging (`names`: prod's, staging's), computed
    by the two servers at the same time; returns prod's (recent rows, rows) and keeps the number
    of ranges and staging's row count on `ranges`. `read_ahead`, `staged_ahead`: where prod's or
    staging's summary is read ahead (dbsync.sync.ahead), what gives its spool once read."""
    if read_ahead is not None:
        staged = staged_ahead() if staged_ahead is not None else None
        if staged is None:
            with room_for(ranges.groups, link.target, sort=False), link.target.cursor() as cur:
                cur.execute(MATERIALISED.format(names[1], _summary(ranges, staging, "s")))
        else:
            with staged:
                _spooled(link, names[1], staged)
        spool = read_ahead()
        with spool if spool is not None else _read_now(link, ranges, prod) as spool:
            _spooled(link, names[0], spool)
        return _totals(link, ranges, names)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
        with room_for(ranges.groups, link.source, link.target, sort=False), \
                reading_prod(link, [(summary_copy(ranges, prod), spool)]), link.target.cursor() as cur:
            cur.execute(MATERIALISED.format(names[1], _summary(ranges, staging, "s")))
        spool.seek(0)
        _spooled(link, names[0], spool)
    return _totals(link, ranges, names)


def _read_now(link: Link, ranges: Ranges, prod: Side):
    """Prod's summary read by the sync's own session, into a spool at its start (one not read
    ahead after all)."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    with room_for(ranges.groups, link.source, sort=False), reading_prod(link, [(summary_copy(ranges, prod), spool)]):
        pass
    spool.seek(0)
    return spool


def summary_copy(ranges: Ranges, side: Side, alias: str | None = None) -> sql.Composed:
    """A side's summary, as a COPY to its client (`alias`: how its hash and filters name the table),
    binary: four bigints a range, which staging reads faster than their text (the same bytes from
    every version)."""
    return sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT binary)").format(_summary(ranges, side, alias))


def _summary(ranges: Ranges, side: Side, alias: str | None) -> sql.Composed:
    table = sql.SQL("{} {}").format(side.table, sql.Identifier(alias)) if alias else side.table
    return _SUMMARY.format(b=ranges.of(alias), h=side.hash, recent=_recent(ranges, side), t=table, where=side.where)


def _spooled(link: Link, name: sql.Identifier, spool) -> None:
    """A summary from its spool into its table on staging."""
    with link.target.cursor() as cur:
        cur.execute(_SUMMARY_TABLE.format(name))
        cur.copy_expert(sql.SQL("COPY {} FROM STDIN WITH (FORMAT binary)").format(name).as_string(link.target), spool)


def _totals(link: Link, ranges: Ranges, names: tuple[sql.Identifier, sql.Identifier]) -> tuple[int, int]:
    with link.target.cursor() as cur:
        ones = _ONES if link.target.info.server_version >= 140000 else _ONES_BEFORE_14
        cur.execute(_TOTALS.format(recent=ones if ranges.exact else sql.SQL("recent"), staging=names[1],
                                   prod=names[0]))
        ranges.count, n_recent, total, ranges.target_rows = cur.fetchone()
    return int(n_recent), int(total)


def _recent(ranges: Ranges, side: Side) -> sql.Composable:
    """The summary's `recent`: a count, or in exact ranges the recent keys' bits (the filter, a
    function of xmin, costs as much as the rest of the row's work: evaluated once)."""
    if ranges.exact:
        return _RECENT_BITS.format(side.hash, side.recent)
    return _RECENT_COUNT.format(side.recent)


@contextlib.contextmanager
def reading_prod(link: Link, copies: list[tuple[sql.Composable, object]]):
    """Prod's COPYs, one after another, each into its spool, in a thread while the block runs
    (staging's own work). On leaving, it waits for them (within the time budget, cancelling
    prod's statement past it) and raises what they raised; should the block fail, prod's COPY
    is cancelled first, so that it ends with the run, not after it."""
    outcome: dict = {}

    def read():
        try:
            with link.source.cursor() as cur:
                for copy_out, spool in copies:
                    cur.copy_expert(copy_out.as_string(link.source), spool)
        except BaseException as exc:  # noqa: BLE001 - re-raised on leaving the block
            outcome["error"] = exc

    thread = threading.Thread(target=read, name="dbsync-summary", daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        link.source.cancel()
        thread.join(timeout=30)
        raise
    stop_at = link.copy_deadline()
    while thread.is_alive():
        thread.join(timeout=0.2)
        if thread.is_alive() and stop_at is not None and time.perf_counter() >= stop_at:
            link.source.cancel()
            thread.join(timeout=30)
            raise BudgetExceeded("the comparison ran out of its time budget")
    if "error" in outcome:
        raise SourceCopyError(outcome["error"])


# Prod's summary against staging's, range by range; a range where staging wrote (or, with digests,
# nothing more) differs too. `{fetched}` counts in prod's rows fetched already that staging lacks.
_DIFFERING = sql.SQL(
    "CREATE TEMP TABLE {out} ON COMMIT DROP AS"
    " SELECT b, (b << {shift}) AS lo, (b << {shift}) + {mask} AS hi FROM {prod} p"
    " FULL JOIN {staging} s USING (b){fetched}"
    " WHERE p.n IS DISTINCT FROM coalesce(s.n, 0){plus_n}"
    "    OR p.h IS DISTINCT FROM coalesce(s.h, 0){xor_h} OR s.recent > 0")
_FETCHED = sql.SQL(" FULL JOIN (SELECT {b_r} AS b, count(*) AS n, bit_xor({h_r}) AS h FROM {rows} r"
                   " WHERE NOT EXISTS (SELECT 1 FROM {t} s WHERE {match}) GROUP BY 1) r USING (b)")


@dataclass
class Fetched:
    """Prod's rows already on staging in a temporary table (`rows`, alias r), the staging rows
    with their keys (`match`), and the hash of their keys."""

    rows: sql.Identifier
    target: sql.Composable
    match: sql.Composable
    hash: sql.Composable


def find_differing(link: Link, ranges: Ranges, names: tuple[sql.Identifier, sql.Identifier], out: sql.Identifier,
                   fetched: Fetched | None = None) -> None:
    """The ranges whose summaries differ, with their bounds, into `out` on staging."""
    parts = {"fetched": sql.SQL(""), "plus_n": sql.SQL(""), "xor_h": sql.SQL("")}
    if fetched:
        parts = {"fetched": _FETCHED.format(b_r=ranges.of("r"), h_r=fetched.hash, rows=fetched.rows,
                                            t=fetched.target, match=fetched.match),
                 "plus_n": sql.SQL(" + coalesce(r.n, 0)"), "xor_h": sql.SQL(" # coalesce(r.h, 0)")}
    with room_for(ranges.groups, link.target, sort=False), link.target.cursor() as cur:
        cur.execute(_DIFFERING.format(out=out, shift=sql.Literal(ranges.shift), mask=sql.Literal(2**ranges.shift - 1),
                                      prod=names[0], staging=names[1], **parts))
        ranges.differing = cur.rowcount


# Prod's recent rows are read through the key's index, range by range, when they lie in at most
# this share of the ranges; beyond it, in one scan of the table.
RECENT_RANGE_SHARE = 0.02


def recent_only(link: Link, ranges: Ranges | None, summary: sql.Identifier, out: sql.Identifier) -> sql.Composable:
    """A JOIN that keeps prod's rows in the ranges its summary (on staging) counts recent rows in,
    where those are few (the table is not scanned again for a few rows); otherwise nothing."""
    if ranges is None:
        return sql.SQL("")
    with link.target.cursor() as cur:
        cur.execute(MATERIALISED.format(out, sql.SQL("SELECT b FROM {} WHERE recent > 0").format(summary)))
        if cur.rowcount > min(MAX_RANGES, RECENT_RANGE_SHARE * ranges.count):
            return sql.SQL("")
    return _source_restriction(link, ranges, out)


def restrictions(link: Link, ranges: Ranges | None, out: sql.Identifier,
                 alias: str = "s") -> tuple[sql.Composable, sql.Composable | None]:
    """(prod's JOIN, staging's JOIN) keeping the differing ranges, where comparing only those
    pays; otherwise (nothing, None): every row."""
    if ranges is None or not ranges.restricts:
        return sql.SQL(""), None
    return _source_restriction(link, ranges, out), _target_restriction(ranges, out, alias)


def _source_restriction(link: Link, ranges: Ranges, out: sql.Identifier) -> sql.Composable:
    """A JOIN that keeps prod's rows in the differing ranges (an index range scan each)."""
    with link.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT b FROM {} ORDER BY b").format(out))
        numbers = "{" + ",".join(str(b) for (b,) in cur.fetchall()) + "}"
    low = sql.SQL("(dbsync_range << {})").format(sql.Literal(ranges.shift))
    return sql.SQL(" JOIN unnest({}::bigint[]) AS dbsync_ranges(dbsync_range) ON {} BETWEEN {} AND {} + {}").format(
        sql.Literal(numbers), sql.Identifier(ranges.column), low, low, sql.Literal(2**ranges.shift - 1))


def _target_restriction(ranges: Ranges, out: sql.Identifier, alias: str) -> sql.Composable:
    """The same on staging, where the differing ranges are a temporary table."""
    return sql.SQL(" JOIN {} d ON {} BETWEEN d.lo AND d.hi").format(out, sql.Identifier(alias, ranges.column))
