"""Staging's synced tables against prod's rows as the rules mask them, through key-range summaries.

Each server summarises its rows per key range in one scan, at the same time (prod's through the
masking expressions the COPY uses, inside the snapshot; dbsync.sync.ranges): the row count, the
sum of a 64-bit hash of each row modulo 2^64 (a sum, not an XOR: duplicate rows of a table
without a key would cancel out), and how many of the rows were written since the last sync. Every
row is read; nothing is sampled. Ranges: the leading key column's value shifted right where it is
an integer, a slice of the key's hash otherwise, one range for a table without a primary key.

Only the ranges whose summaries differ are read again, key by key, to count and attribute the
differing rows with the sync's record (dbsync.sync.record): written on prod since the last sync
(xmin newer than its snapshot), written on staging since, or unexplained. A row one side lacks
and the other did not write since was there at the last sync, so the side that lacks it deleted
it. Without a usable record every difference is unexplained. Keys are reported, never values.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync import sqltext
from dbsync.sync import delta, ranges, record
from dbsync.sync.copy import stream_copy
from dbsync.sync.link import Link
from dbsync.sync.units import Unit

# Rows per range, about: coarser than the incremental sync's (fewer ranges to summarise), unless
# prod wrote enough since the last sync to touch most coarse ranges: then every row of those would
# be read again key by key, and the sync's own ranges cost less.
RANGE_ROWS_SHIFT = 4  # 2^4 × ranges.RANGE_ROWS
# The share of rows prod wrote since (sampled) above which a table is cut as the sync cuts it: a
# coarse range then holds a written row with a chance of about one in ten or more.
FINE_ABOVE = 0.1 / (ranges.RANGE_ROWS << RANGE_ROWS_SHIFT)
HASH_BUCKET_SHIFT = 52  # a key without an integer to cut: 4096 slices of its hash
SAMPLE_KEYS = 5
_MOD64 = sql.Literal(2**64)

_SUMMARY = sql.SQL("SELECT {b} AS b, count(*) AS n, {combined} AS h, count(*) FILTER (WHERE {recent}) AS r"
                   " FROM {t}{where} GROUP BY 1")
_PROD_SUMMARY = sql.SQL("CREATE TEMP TABLE {} (b bigint, n bigint, h numeric, r bigint) ON COMMIT DROP")
_DIFFERING = sql.SQL("SELECT b, coalesce(p.n, 0), coalesce(s.n, 0), coalesce(p.r, 0), coalesce(s.r, 0)"
                     " FROM {p} p FULL JOIN {s} s USING (b)"
                     " WHERE p.n IS DISTINCT FROM s.n OR p.h IS DISTINCT FROM s.h ORDER BY b")
_TOTALS = sql.SQL("SELECT (SELECT coalesce(sum(n), 0) FROM {p}), (SELECT coalesce(sum(n), 0) FROM {s}),"
                  " (SELECT count(*) FROM {p} FULL JOIN {s} USING (b))")
_KEYED_ROWS = sql.SQL("SELECT {keys}, {h} AS dbsync_h, {recent} AS dbsync_r FROM {t}{where}")
_KEYED_TABLE = sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, 0::bigint AS dbsync_h,"
                       " false AS dbsync_r FROM {} WITH NO DATA")
# Each differing row with who wrote it (see the module docstring), into a temporary table.
_ATTRIBUTED = sql.SQL(
    "CREATE TEMP TABLE {out} ON COMMIT DROP AS SELECT concat_ws(', ', {shown}) AS k, CASE"
    " WHEN NOT {usable} THEN 'unexplained'"
    " WHEN p.dbsync_h IS NOT NULL AND s.dbsync_h IS NOT NULL THEN"
    "  CASE WHEN s.dbsync_r THEN 'staging' WHEN p.dbsync_r THEN 'prod' ELSE 'unexplained' END"
    " WHEN s.dbsync_h IS NULL THEN CASE WHEN p.dbsync_r THEN 'prod' ELSE 'staging' END"
    " ELSE CASE WHEN s.dbsync_r THEN 'staging' ELSE 'prod' END END AS who,"
    " {typed}, s.dbsync_h IS NOT NULL AS dbsync_on_staging"
    " FROM {p} p FULL JOIN {s} s ON {match} WHERE p.dbsync_h IS DISTINCT FROM s.dbsync_h")
WHO = ("prod", "staging", "unexplained")


@dataclass
class TableCompared:
    """One table's comparison: rows on each side, ranges, and its differing rows by who wrote them."""

    table: str
    source_rows: int = 0
    target_rows: int = 0
    ranges: int = 0
    differing_ranges: list[str] = field(default_factory=list)  # "id 4096..8191", at most a few
    differing_range_count: int = 0
    differences: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WHO, 0))
    keys: dict[str, list[str]] = field(default_factory=dict)  # who → a few differing keys
    attributed: bool = False  # a usable record of the last sync
    cut: Cut | None = field(default=None, repr=False)  # how the table was cut into ranges
    buckets: list[int] = field(default_factory=list, repr=False)  # the differing ranges, every one
    # The differing rows (a temporary table on staging: who, dbsync_key_<i>, dbsync_on_staging).
    rows_differing: sql.Identifier | None = field(default=None, repr=False)

    @property
    def differ(self) -> bool:
        return self.differing_range_count > 0

    def as_dict(self) -> dict:
        return {"table": self.table, "source_rows": self.source_rows, "target_rows": self.target_rows,
                "key_ranges": self.ranges, "key_ranges_differing": self.differing_range_count,
                "written_on_prod": self.differences["prod"], "written_on_staging": self.differences["staging"],
                "unexplained": self.differences["unexplained"],
                "attributed": "since the last sync" if self.attributed else "no record"}


@dataclass
class Cut:
    """How a table's rows fall into ranges, and how a range is named in a report."""

    bucket: sql.Composable  # over the unqualified columns (prod's)
    staged_bucket: sql.Composable  # over alias s (staging's)
    column: str | None = None  # the integer column cut, or None (the key's hash, or one range)
    shift: int = 0
    groups: int = 1  # ranges, at most (about)

    def name(self, b: int) -> str:
        if self.column is None:
            return f"slice {b} of the key's hash" if self.shift else "the whole table"
        return f"{self.column} {b << self.shift}..{((b + 1) << self.shift) - 1}"


def primary_key(unit: Unit, keys: dict) -> tuple[str, ...]:
    """The target's primary key, where every column of it travels."""
    found = keys.get(unit.target.key)
    key = found.primary if found else ()
    return key if key and set(key) <= set(unit.columns) else ()


def source_items(unit: Unit) -> list[sql.Composable]:
    """Each column as the COPY sends it: its masking expression, or itself."""
    m = unit.masked
    return [(m.expressions.get(c) if m else None) or sql.Identifier(c) for c in unit.columns]


def source_conditions(unit: Unit) -> list[sql.Composable]:
    """Which of prod's rows travel: none for `rows: none`, the rules' `where:`, else all."""
    m = unit.masked
    if m is not None and not m.copy_rows:
        return [sql.SQL("false")]
    if m is not None and m.where:
        return [sql.SQL("({})").format(sqltext.fragment(m.where))]
    return []


def where(*conditions: sql.Composable) -> sql.Composable:
    """` WHERE a AND b`, or nothing."""
    return sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(conditions)) if conditions else sql.SQL("")


def plan_cut(link: Link, unit: Unit, key: tuple[str, ...], fast: bool, fine: bool = False) -> Cut:
    """How the table's rows fall into ranges: by the leading key column where it is an integer
    (`fine`: as the incremental sync cuts it), by a slice of the key's hash, or one range."""
    if not key:
        return Cut(sql.SQL("0"), sql.SQL("0"))
    found = ranges.plan_ranges(link, unit, key, from_=delta.only_from(unit.source))
    if found is not None:
        shift = min(62, found.shift + (0 if fine else RANGE_ROWS_SHIFT))
        cut = ranges.Ranges(found.column, shift, span=found.span)
        return Cut(cut.of(), cut.of("s"), found.column, shift, groups=cut.groups)
    shifted = sql.SQL("({} >> {})")
    return Cut(shifted.format(ranges.hash64([sql.Identifier(k) for k in key], fast), sql.Literal(HASH_BUCKET_SHIFT)),
               shifted.format(ranges.hash64([sql.Identifier("s", k) for k in key], fast),
                              sql.Literal(HASH_BUCKET_SHIFT)),
               shift=HASH_BUCKET_SHIFT, groups=2 ** (64 - HASH_BUCKET_SHIFT))


@dataclass
class Sides:
    """What each server reads of one table: prod's rows as they travel, staging's as they are."""

    link: Link
    unit: Unit
    fast: bool
    prod_recent: sql.Composable
    staging_recent: sql.Composable

    @property
    def prod_table(self) -> sql.Composable:
        return delta.only_from(self.unit.source)

    @property
    def staging_table(self) -> sql.Composable:
        return sql.SQL("{} s").format(delta.only_from(self.unit.target))

    def prod_hash(self) -> sql.Composable:
        return ranges.row_hash(self.link, self.unit, source_items(self.unit), self.fast)

    def staging_hash(self) -> sql.Composable:
        return ranges.row_hash(self.link, self.unit, [sql.Identifier("s", c) for c in self.unit.columns], self.fast)


def sides(link: Link, unit: Unit, last: record.LastSync | None) -> Sides:
    """Prod's and staging's recent-row conditions from the record's `last` entry (none: nothing
    counts as recent, so nothing is attributed)."""
    fast = delta.fast_digest(link, unit)
    if last is None:
        return Sides(link, unit, fast, sql.SQL("false"), sql.SQL("false"))
    return Sides(link, unit, fast, record.recent_source_filter(last),
                 record.recent_target_filter(last, sql.Identifier("s", "xmin")))


@dataclass
class Planned:
    """One table's comparison, planned: what each side reads, how it is cut, where the summaries go."""

    unit: Unit
    key: tuple[str, ...]
    side: Sides
    cut: Cut
    slot: int
    result: TableCompared

    @property
    def names(self) -> tuple[sql.Identifier, sql.Identifier]:
        return _temp("prod", self.slot), _temp("staged", self.slot)


def plan_table(link: Link, unit: Unit, key: tuple[str, ...], last: record.LastSync | None, slot: int) -> Planned:
    side = sides(link, unit, last)
    fine = False
    if key and last is not None:
        seen = delta.recent_sample(link, unit, side.prod_recent)
        fine = seen.recent > FINE_ABOVE * seen.rows
    return Planned(unit, key, side, plan_cut(link, unit, key, side.fast, fine), slot,
                   TableCompared(unit.label, attributed=last is not None))


def compare_tables(link: Link, planned: list[Planned], meanwhile=lambda: None) -> list[TableCompared]:
    """Every planned table's summaries (prod's read by one thread, table after table, while
    staging computes its own and then runs `meanwhile`, more of staging's own work), then the
    differing ranges of each, key by key."""
    summarise_all(link, planned, meanwhile)
    for p in planned:
        finish_table(link, p)
    return [p.result for p in planned]


def compare_table(link: Link, unit: Unit, key: tuple[str, ...], last: record.LastSync | None,
                  slot: int) -> TableCompared:
    """Both servers' summaries of one table at once, then the differing ranges key by key."""
    return compare_tables(link, [plan_table(link, unit, key, last, slot)])[0]


def finish_table(link: Link, p: Planned) -> None:
    """The summaries compared; the differing ranges' rows attributed (both sessions)."""
    result, names = p.result, p.names
    with ranges.room_for(p.cut.groups, link.target), link.target.cursor() as cur:
        cur.execute(_TOTALS.format(p=names[0], s=names[1]))
        result.source_rows, result.target_rows, result.ranges = (int(x) for x in cur.fetchone())
        cur.execute(_DIFFERING.format(p=names[0], s=names[1]))
        differing = cur.fetchall()
    result.differing_range_count = len(differing)
    result.differing_ranges = [p.cut.name(int(b)) for b, *_ in differing[:SAMPLE_KEYS]]
    result.cut, result.buckets = p.cut, [int(b) for b, *_ in differing]
    if not differing:
        return
    if p.key:
        _attribute_rows(link, p.side, p.cut, p.key, result.buckets, p.slot, result)
    else:
        _attribute_counts(differing, result)


def _combined(key: tuple[str, ...], row_hash: sql.Composable) -> sql.Composable:
    """A range's rows' hashes combined: an XOR where every row holds a key (no two rows alike, so
    none cancel out; and its state per range costs nothing, where a sum's is an allocation);
    without a key, their sum modulo 2^64, so that duplicate rows count."""
    if key:
        return sql.SQL("bit_xor({})").format(row_hash)
    return sql.SQL("sum({}) % {}").format(row_hash, _MOD64)


def _temp(name: str, slot: int) -> sql.Identifier:
    return sql.Identifier(f"_dbsync_verify_{name}_{slot}")


def summarise_all(link: Link, planned: list[Planned], meanwhile=lambda: None) -> None:
    """Prod's summaries spooled by a thread while staging computes its own; both into temporary
    tables on staging."""
    copies = [sql.SQL("COPY ({}) TO STDOUT").format(_SUMMARY.format(
        b=p.cut.bucket, combined=_combined(p.key, p.side.prod_hash()), recent=p.side.prod_recent, t=p.side.prod_table,
        where=where(*source_conditions(p.unit)))) for p in planned]
    spools = [tempfile.SpooledTemporaryFile(max_size=ranges.SPOOL_MEMORY) for _ in planned]
    try:
        groups = max((p.cut.groups for p in planned), default=1)
        with ranges.room_for(groups, link.source, sort=False), \
                ranges.reading_prod(link, list(zip(copies, spools, strict=True))):
            with ranges.room_for(groups, link.target, sort=False), link.target.cursor() as cur:
                for p in planned:
                    cur.execute(ranges.MATERIALISED.format(p.names[1], _SUMMARY.format(
                        b=p.cut.staged_bucket, combined=_combined(p.key, p.side.staging_hash()),
                        recent=p.side.staging_recent, t=p.side.staging_table, where=sql.SQL(""))))
            meanwhile()
        with link.target.cursor() as cur:
            for p, spool in zip(planned, spools, strict=True):
                spool.seek(0)
                cur.execute(_PROD_SUMMARY.format(p.names[0]))
                cur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(p.names[0]).as_string(link.target), spool)
    finally:
        for spool in spools:
            spool.close()


def _attribute_counts(differing: list[tuple], result: TableCompared) -> None:
    """A table without a key: its one range differs; prod's or staging's recent rows explain it."""
    _, p_n, s_n, p_r, s_r = differing[0]
    who = "unexplained" if not result.attributed else "prod" if p_r else "staging" if s_r else "unexplained"
    result.differences[who] += max(1, abs(int(p_n) - int(s_n)))


def _attribute_rows(link: Link, side: Sides, cut: Cut, key: tuple[str, ...], buckets: list[int], slot: int,
                    result: TableCompared) -> None:
    """Both sides' (key, row hash, recent) in the differing ranges, joined on staging by key."""
    unit, chosen = side.unit, sql.Literal("{" + ",".join(map(str, buckets)) + "}")
    prod_rows, staged_rows, out = _temp("prod_rows", slot), _temp("staged_rows", slot), _temp("differences", slot)
    in_ranges = sql.SQL("{} = ANY({}::bigint[])")
    with link.target.cursor() as cur:
        cur.execute(_KEYED_TABLE.format(prod_rows, delta.key_list(key), delta.only_from(unit.target)))
        cur.execute(ranges.MATERIALISED.format(staged_rows, _KEYED_ROWS.format(
            keys=delta.key_list(key, "s"), h=side.staging_hash(), recent=side.staging_recent, t=side.staging_table,
            where=where(in_ranges.format(cut.staged_bucket, chosen)))))
    copy_out = sql.SQL("COPY ({}) TO STDOUT").format(_KEYED_ROWS.format(
        keys=delta.key_list(key), h=side.prod_hash(), recent=side.prod_recent, t=side.prod_table,
        where=where(*source_conditions(unit), in_ranges.format(cut.bucket, chosen))))
    stream_copy(link.source, link.target, copy_out, sql.SQL("COPY {} FROM STDIN").format(prod_rows),
                stop_at=link.copy_deadline())
    shown = sql.SQL(", ").join(sql.SQL("coalesce(p.{k}, s.{k})::text").format(k=sql.Identifier(k)) for k in key)
    with link.target.cursor() as cur:
        typed = sql.SQL(", ").join(sql.SQL("coalesce(p.{k}, s.{k}) AS {as_}").format(
            k=sql.Identifier(k), as_=sql.Identifier(f"dbsync_key_{i}")) for i, k in enumerate(key))
        cur.execute(_ATTRIBUTED.format(out=out, shown=shown, usable=sql.Literal(result.attributed), p=prod_rows,
                                       s=staged_rows, match=delta.match_keys(key, "s", "p"), typed=typed))
        result.rows_differing = out
        cur.execute(sql.SQL("SELECT who, count(*), (array_agg(k ORDER BY k))[1:{}] FROM {} GROUP BY 1").format(
            sql.Literal(SAMPLE_KEYS), out))
        for who, n, sample in cur.fetchall():
            result.differences[who] = int(n)
            result.keys[who] = [f"{', '.join(key)} = {k}" for k in sample]
