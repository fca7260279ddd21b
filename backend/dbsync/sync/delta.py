"""The incremental refresh: per table, only the rows that differ, applied in place.

For a table with a primary key, each server digests its rows as the copy would produce them —
md5 of the row's text, prod's through the masking expressions, inside the sync's snapshot —
and prod's (key, digest) pairs stream into a temporary table on staging, where one join finds
the keys that are new or changed and those staging has but prod lacks. Only those rows travel:
prod's version of each differing row is read by key and streamed into a second temporary
table, then applied with an UPDATE of changed rows and an INSERT of new ones, parents first,
then a DELETE of vanished keys, children first (dbsync.sync.apply). This module finds them.
Nothing is truncated and no index or constraint is dropped; the tables are locked in EXCLUSIVE
mode, which readers pass and writers wait for, so nothing written after the comparison survives
the sync.

md5 and the row's text are stable across major versions, and both sessions pin every output
setting the text depends on (dbsync.sessions); between servers of one major version, and
for tables whose types allow it, the internal hash_record_extended does the same several times
cheaper (fast_digest).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from psycopg2 import sql

from dbsync import sqltext
from dbsync.errors import DbSyncError
from dbsync.sync import keysets, ranges
from dbsync.sync.copy import stream_copy
from dbsync.sync.link import Link
from dbsync.sync.units import Unit

# Above this share of differing rows a full copy of the table is cheaper than the delta.
AUTO_FULL_FRACTION = 0.25
# Keys fetched from prod in one statement (their values are written into the COPY's SQL text).
MAX_DELTA_KEYS = 200_000
# The sample that decides early for a table with one integer key: keys divisible by this.
SAMPLE_MODULUS = 97
# Pages of prod's table read to tell a table mostly rewritten since the last sync (see recent_sample).
SAMPLE_PAGES = 100


class DeltaConflict(DbSyncError):
    """Applying a delta broke a constraint; the sync runs again in full. `table`: the table whose
    changes broke it (or the tables of the foreign-key cycle applied together)."""

    def __init__(self, message: str, *, table: str | None = None, **where):
        super().__init__(message, **where)
        self.table = table


@dataclass
class Delta:
    source_rows: int = 0
    changed: int = 0  # new or different on prod
    gone: int = 0  # on staging, not on prod
    digest_seconds: float = 0.0
    how: str = "by digest"  # or "since the last sync" (dbsync.sync.record)
    sampled: bool = False  # changed and source_rows are a sample's (recent_sample)
    ranges: ranges.Ranges | None = None  # how the key was cut, if it was (dbsync.sync.ranges)
    inserted: int = 0  # by the apply
    deleted: int = 0  # vanished keys no longer there after it, whoever removed them (a cascade too)
    key: tuple[str, ...] = ()  # the primary key rows are matched by
    slot: int = 0  # the number in its temporary tables' names (_dbsync_rows_<slot>, …)
    wanted: list[tuple] | None = None  # the keys to fetch, when not in _dbsync_changed_<slot> (keysets)
    added: list[tuple] | None = None  # keys staging lacks, fetched into _dbsync_added_<slot> (keysets)

    @property
    def target_rows(self) -> int | None:
        """Staging's row count after the apply, where its count before is known."""
        before = self.ranges.target_rows if self.ranges else None
        return None if before is None else int(before) + self.inserted - self.deleted

    @property
    def fraction(self) -> float:
        return (self.changed + self.gone) / max(1, self.source_rows)


def only_from(unit_table) -> sql.Composable:
    """ONLY for a plain table (inheritance children are units of their own)."""
    return unit_table.ident if unit_table.relkind == "p" else sql.SQL("ONLY {}").format(unit_table.ident)


# Types whose internal hash agrees with equality *and* with the text a full copy would write
# (numeric without a declared scale does not: 1.0 and 1.00 are equal and hash alike).
HASHABLE = re.compile(r"^(smallint|integer|bigint|boolean|text|character varying(\(\d+\))?|character\(\d+\)"
                       r"|numeric\(\d+,\d+\)|real|double precision|date|timestamp(\(\d\))? with(out)? time zone"
                       r"|time(\(\d\))? without time zone|uuid|bytea|jsonb|inet|oid)$")


def _same_major(link: Link) -> bool:
    return link.source.info.server_version // 10000 == link.target.info.server_version // 10000


def fast_digest(link: Link, unit: Unit, columns: list[str] | tuple[str, ...] | None = None) -> bool:
    """hash_record_extended instead of md5 of the row's text: several times cheaper, but internal,
    so only between servers of one major version, with identical built-in types (binary COPY's
    condition), each of a type whose hash agrees with its text — of every column the copy sends,
    or of `columns` (the key's, to hash keys)."""
    return _same_major(link) and unit.binary and all(HASHABLE.match(unit.source.columns[c].type)
                                                    for c in (unit.columns if columns is None else columns))


def _row_digest(items: list[sql.Composable], fast: bool = False) -> sql.Composable:
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(items))
    if fast:  # two seeds: 128 bits, so a missed change is as unlikely as with md5
        return sql.SQL("hash_record_extended({row}, 0)::text || ':' || hash_record_extended({row}, 1)::text").format(
            row=row)
    return sql.SQL("md5({}::text)").format(row)


def key_list(key: tuple[str, ...], alias: str | None = None) -> sql.Composable:
    """`k0, k1` (or `alias.k0, alias.k1`): the key's columns."""
    return sql.SQL(", ").join(sql.Identifier(alias, k) if alias else sql.Identifier(k) for k in key)


def _source_items(unit: Unit) -> list[sql.Composable]:
    """The values the copy would send, column by column (masked where the rules say)."""
    m = unit.masked
    return [(m.expressions.get(c) if m else None) or sql.Identifier(c) for c in unit.columns]


def _source_where(unit: Unit, *conditions: sql.Composable) -> sql.Composable:
    """` WHERE …` for the source: the rules' `where:` (if any) and `conditions`, or nothing."""
    m = unit.masked
    parts = ([sql.SQL("({})").format(sqltext.fragment(m.where))] if m and m.where else []) + list(conditions)
    return sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(parts)) if parts else sql.SQL("")


def match_keys(key: tuple[str, ...], left: str, right: str, right_prefix: str = "") -> sql.Composable:
    """`left.k = right.k AND …` over the key's columns (`right`'s named `<prefix>k`)."""
    return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(left, k),
                                                           sql.Identifier(right, right_prefix + k)) for k in key)


def sample_fraction(link: Link, unit: Unit, key: tuple[str, ...]) -> float | None:
    """For one integer key: the differing share among the rows whose key is divisible by
    SAMPLE_MODULUS, read from both sides (small); None when the key is not a single integer."""
    col = unit.source.columns[key[0]]
    if len(key) != 1 or col.type not in ("integer", "bigint", "smallint"):
        return None
    k = sql.Identifier(key[0])
    fast = fast_digest(link, unit)
    condition = sql.SQL("{} % {} = 0").format(k, sql.Literal(SAMPLE_MODULUS))
    with link.source.cursor() as cur:
        cur.execute(sql.SQL("SELECT {}, {} FROM {}{}").format(k, _row_digest(_source_items(unit), fast),
                                                             only_from(unit.source), _source_where(unit, condition)))
        prod = dict(cur.fetchall())
    with link.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
            k, _row_digest([sql.Identifier(c) for c in unit.columns], fast), only_from(unit.target), condition))
        staging = dict(cur.fetchall())
    differing = sum(1 for key_, d in prod.items() if staging.get(key_) != d) + len(staging.keys() - prod.keys())
    return differing / max(1, len(prod))


def temp_table(name: str, i: int) -> sql.Identifier:
    return sql.Identifier(f"_dbsync_{name}_{i}")


def _copy_format(unit: Unit) -> sql.Composable:
    return sql.SQL(" WITH (FORMAT binary)") if unit.binary else sql.SQL("")


_NOTHING = sql.SQL("")


def _rows_out(unit: Unit, condition: sql.Composable, join: sql.Composable = _NOTHING) -> sql.Composed:
    """The source's COPY of whole rows as the copy would send them (masked), those matching
    (within `join`, a restriction to some key ranges)."""
    items = [sql.SQL("{} AS {}").format(e, sql.Identifier(c))
             for e, c in zip(_source_items(unit), unit.columns, strict=True)]
    return sql.SQL("COPY (SELECT {} FROM {}{}{}) TO STDOUT{}").format(
        sql.SQL(", ").join(items), only_from(unit.source), join, _source_where(unit, condition), _copy_format(unit))


def _into(table: sql.Identifier, unit: Unit, *, binary: bool) -> sql.Composed:
    return sql.SQL("COPY {} FROM STDIN{}").format(table, _copy_format(unit) if binary else sql.SQL(""))


def _create_rows(cur, unit: Unit, i: int, name: str = "rows") -> None:
    cur.execute(_EMPTY_LIKE.format(temp_table(name, i), sql.SQL(", ").join(sql.Identifier(c) for c in unit.columns),
                                    only_from(unit.target)))


# The statements of the comparison and the apply, composed at use (every name an Identifier).
_EMPTY_LIKE = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA")
_DIGESTS_TABLE = sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, ''::text AS dbsync_digest"
                          " FROM {} WITH NO DATA")
_CHANGED_BY_DIGEST = sql.SQL("CREATE TEMP TABLE {ch} ON COMMIT DROP AS SELECT {pk} FROM {pd} p"
                             " LEFT JOIN {t} s ON {match} WHERE s.{k0} IS NULL OR {staged} <> p.dbsync_digest")
_GONE_BY_DIGEST = sql.SQL("CREATE TEMP TABLE {g} ON COMMIT DROP AS SELECT {sk} FROM {staged} s"
                          " WHERE NOT EXISTS (SELECT 1 FROM {pd} p WHERE {match})")
# One hash join of prod's keys with staging's rows (all, or those in the key ranges that differ):
# keys only one side has, and staging's rows written since the last sync; everything else is
# the same on both sides.
_JOINED_KEYS = sql.SQL("CREATE TEMP TABLE {both} ON COMMIT DROP AS SELECT {pk_cols}, {sk_cols} FROM {pk} p"
                       " FULL JOIN {staged} s ON {match} WHERE p.{k0} IS NULL OR s.{k0} IS NULL OR {recent}")
_STAGED_KEYS = sql.SQL("SELECT {s_keys}, s.xmin AS dbsync_xmin FROM {t} s{restrict}")
_CHANGED_FROM_JOIN = sql.SQL("CREATE TEMP TABLE {ch} ON COMMIT DROP AS SELECT {keys} FROM {both} b"
                             " WHERE b.{p0} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {rows} r WHERE {in_rows})")
_GONE_FROM_JOIN = sql.SQL("CREATE TEMP TABLE {g} ON COMMIT DROP AS SELECT {keys} FROM {both} b WHERE b.{p0} IS NULL")


def diff(link: Link, unit: Unit, key: tuple[str, ...], i: int) -> Delta:
    """Prod's (key, digest) pairs into a temporary table on staging — of the key ranges whose
    summaries of row hashes differ, where the key can be cut (dbsync.sync.ranges), else of every
    row; there, the keys that differ (`_dbsync_changed_i`) and those staging alone has
    (`_dbsync_gone_i`)."""
    began = time.perf_counter()
    fast = fast_digest(link, unit)
    pd, target, source = temp_table("prod", i), unit.target, only_from(unit.source)
    staged_items = [sql.Identifier("s", c) for c in unit.columns]
    cut = ranges.plan_ranges(link, unit, key, from_=source)
    total, differing = None, temp_table("ranges", i)
    if cut:
        summaries = (temp_table("summary", i), temp_table("staged_summary", i))
        prod_hash = ranges.row_hash(link, unit, _source_items(unit), fast)
        _, total = ranges.summarise(
            link, cut, summaries, ranges.Side(source, _source_where(unit), prod_hash, sql.SQL("false")),
            ranges.Side(only_from(target), sql.SQL(""), ranges.row_hash(link, unit, staged_items, fast),
                        sql.SQL("false")))
        ranges.find_differing(link, cut, summaries, differing)
    source_join, target_join = ranges.restrictions(link, cut, differing)
    with link.target.cursor() as cur:
        cur.execute(_DIGESTS_TABLE.format(pd, key_list(key), only_from(target)))
    copy_out = sql.SQL("COPY (SELECT {}, {} FROM {}{}{}) TO STDOUT").format(
        key_list(key), _row_digest(_source_items(unit), fast), source, source_join, _source_where(unit))
    sent = stream_copy(link.source, link.target, copy_out, _into(pd, unit, binary=False),
                       stop_at=link.copy_deadline())
    match = match_keys(key, "s", "p")
    with link.target.cursor() as cur:
        cur.execute(_CHANGED_BY_DIGEST.format(
            ch=temp_table("changed", i), pk=key_list(key, "p"), pd=pd, t=only_from(target), match=match,
            k0=sql.Identifier(key[0]), staged=_row_digest(staged_items, fast)))
        n_changed = cur.rowcount
        cur.execute(_GONE_BY_DIGEST.format(g=temp_table("gone", i), sk=key_list(key, "s"),
                                           staged=_staged_keys(cur, unit, key, i, target_join), pd=pd, match=match))
        n_gone = cur.rowcount
    return Delta(sent.source_rows if total is None else total, n_changed, n_gone, time.perf_counter() - began,
                 ranges=cut, key=key, slot=i)


def _staged_keys(cur, unit: Unit, key: tuple[str, ...], i: int,
                 restriction: sql.Composable | None) -> sql.Composable:
    """Staging's keys (and xmin) to join with prod's: the whole table, or those in the differing
    ranges (`restriction`), materialised — a join on ranges has no estimate the planner could
    size a hash join by."""
    if restriction is None:
        return sql.SQL("({})").format(_STAGED_KEYS.format(s_keys=key_list(key, "s"), t=only_from(unit.target),
                                                          restrict=sql.SQL("")))
    cur.execute(ranges.MATERIALISED.format(temp_table("staged", i), _STAGED_KEYS.format(
        s_keys=key_list(key, "s"), t=only_from(unit.target), restrict=restriction)))
    return temp_table("staged", i)


@dataclass
class Sample:
    """Prod's pages sampled: their rows, and those written since the last sync."""

    rows: int
    recent: int

    @property
    def rewritten(self) -> bool:
        """Mostly rewritten since the last sync: a full copy at once."""
        return self.recent > AUTO_FULL_FRACTION * max(1, self.rows)


_SAMPLE = sql.SQL("SELECT count(*), count(*) FILTER (WHERE {recent}) FROM {t} TABLESAMPLE SYSTEM ({pct})"
                  " REPEATABLE (0){where}")


def recent_sample(link: Link, unit: Unit, recent: sql.Composable) -> Sample:
    """About SAMPLE_PAGES of prod's pages, at random but the same each time (every page of a small
    table): a table mostly rewritten since the last sync goes to a full copy before either side
    scans it. A partitioned table is not sampled (its pages are its partitions'): its summaries
    decide."""
    if unit.source.relkind == "p":
        return Sample(0, 0)
    with link.source.cursor() as cur:
        cur.execute("SELECT pg_relation_size(%s), current_setting('block_size')::int", (unit.source.oid,))
        size, page = cur.fetchone()
        pct = min(100.0, 100.0 * SAMPLE_PAGES * page / max(1, size))
        cur.execute(_SAMPLE.format(recent=recent, t=only_from(unit.source), pct=sql.Literal(pct),
                                   where=_source_where(unit)))
        rows, n_recent = cur.fetchone()
    return Sample(rows, n_recent)


def recent_share(link: Link, unit: Unit, recent: sql.Composable) -> tuple[int, int]:
    """(rows written since the last sync, all rows) on prod: one scan with a cheap filter, before
    any key or row is streamed, so that a table mostly rewritten goes straight to a full copy."""
    with link.source.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FILTER (WHERE {}), count(*) FROM {}{}").format(
            recent, only_from(unit.source), _source_where(unit)))
        return cur.fetchone()


def _prefixed(key: tuple[str, ...], alias: str, prefix: str, *, to_plain: bool = False) -> sql.Composable:
    """`alias.k AS prefix_k, …`, or with `to_plain` `prefix_k AS k, …`."""
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(sql.Identifier(prefix + k), sql.Identifier(k)) if to_plain
        else sql.SQL("{} AS {}").format(sql.Identifier(alias, k), sql.Identifier(prefix + k)) for k in key)


@dataclass
class Look:
    """What prod tells of a table before staging is read, since the last sync: its sample, how
    its key is cut, and prod's side of the summary (where it is cut). Taken for every table
    first, so that prod's summaries can be read ahead (dbsync.sync.ahead)."""

    sample: Sample
    seconds: float
    cut: ranges.Ranges | None = None
    prod: ranges.Side | None = None
    staging: ranges.Side | None = None  # staging's side of the summary, alias s


def look(link: Link, unit: Unit, key: tuple[str, ...], last) -> Look:
    from dbsync.sync.record import recent_source_filter, recent_target_filter

    began = time.perf_counter()
    recent, source = recent_source_filter(last), only_from(unit.source)
    seen = recent_sample(link, unit, recent)
    if seen.rewritten:
        return Look(seen, time.perf_counter() - began)
    cut = ranges.plan_ranges(link, unit, key, from_=source, exact=True)
    if cut is None:
        return Look(seen, time.perf_counter() - began)
    fast = fast_digest(link, unit, key)
    hashes = (cut.bit(), cut.bit("s")) if cut.exact else (ranges.key_hash(unit, key, fast),
                                                           ranges.key_hash(unit, key, fast, "s"))
    staging = ranges.Side(only_from(unit.target), sql.SQL(""), hashes[1],
                          recent_target_filter(last, sql.Identifier("s", "xmin")))
    return Look(seen, time.perf_counter() - began, cut,
                ranges.Side(source, _source_where(unit), hashes[0], recent), staging)


def diff_recent(link: Link, unit: Unit, key: tuple[str, ...], i: int, last, seen: Look, read_ahead=None,
                staged_ahead=None) -> Delta:
    """What differs, from what the last sync saw (dbsync.sync.record) and prod's first look at
    the table (`look`): for a key of one integer column, read off exact key sets
    (dbsync.sync.keysets); otherwise prod's recent rows into `_dbsync_rows_i`, the other keys to
    fetch into `_dbsync_changed_i` — where the key allows, comparing only the key ranges whose
    summaries differ (dbsync.sync.ranges). Vanished keys go into `_dbsync_gone_i`; no row is
    digested. `read_ahead`, `staged_ahead`: the summaries, read ahead (ranges.summarise)."""
    from dbsync.sync.record import recent_source_filter, recent_target_filter

    began = time.perf_counter() - seen.seconds
    if seen.sample.rewritten:
        return Delta(seen.sample.rows, seen.sample.recent, 0, time.perf_counter() - began, sampled=True)
    recent, source, cut = recent_source_filter(last), only_from(unit.source), seen.cut
    fast = fast_digest(link, unit, key)
    summaries = (temp_table("summary", i), temp_table("staged_summary", i))
    if cut:
        n_recent, total = ranges.summarise(link, cut, summaries, seen.prod, seen.staging, read_ahead, staged_ahead)
    else:
        n_recent, total = recent_share(link, unit, recent)
    if n_recent > AUTO_FULL_FRACTION * max(1, total):
        return Delta(total, n_recent, 0, time.perf_counter() - began)
    if cut and cut.exact:
        return _from_key_sets(link, unit, key, i, cut, summaries, total, began)
    pk, rows, both = temp_table("prodkeys", i), temp_table("rows", i), temp_table("keys", i)
    stop_at = link.copy_deadline()
    with link.target.cursor() as cur:
        cur.execute(_EMPTY_LIKE.format(pk, key_list(key), only_from(unit.target)))
        _create_rows(cur, unit, i)
    fetched = 0
    if n_recent:
        # The table's xmin, named in full: a join to key ranges has columns of its own.
        written = recent_source_filter(last, sql.SQL("{}.xmin").format(unit.source.ident))
        within = ranges.recent_only(link, cut, summaries[0], temp_table("recent_ranges", i))
        fetched = stream_copy(link.source, link.target, _rows_out(unit, written, within),
                              _into(rows, unit, binary=True), binary=unit.binary, stop_at=stop_at).target_rows
    differing = temp_table("ranges", i)
    if cut:
        ranges.find_differing(link, cut, summaries, differing, ranges.Fetched(
            rows, only_from(unit.target), match_keys(key, "s", "r"), ranges.key_hash(unit, key, fast, "r")))
    source_join, target_join = ranges.restrictions(link, cut, differing)
    keys_out = sql.SQL("COPY (SELECT {} FROM {}{}{}) TO STDOUT{}").format(
        key_list(key), source, source_join, _source_where(unit), _copy_format(unit))
    stream_copy(link.source, link.target, keys_out, _into(pk, unit, binary=True), binary=unit.binary, stop_at=stop_at)
    p0 = sql.Identifier(f"p_{key[0]}")
    with link.target.cursor() as cur:
        cur.execute(_JOINED_KEYS.format(
            both=both, pk_cols=_prefixed(key, "p", "p_"), sk_cols=_prefixed(key, "s", "s_"), pk=pk,
            staged=_staged_keys(cur, unit, key, i, target_join),
            match=match_keys(key, "s", "p"), k0=sql.Identifier(key[0]),
            recent=recent_target_filter(last, sql.Identifier("s", "dbsync_xmin"))))
        cur.execute(_CHANGED_FROM_JOIN.format(
            ch=temp_table("changed", i), keys=_prefixed(key, "b", "p_", to_plain=True), both=both, p0=p0, rows=rows,
            in_rows=match_keys(key, "r", "b", "p_")))
        n_changed = cur.rowcount
        cur.execute(_GONE_FROM_JOIN.format(g=temp_table("gone", i), keys=_prefixed(key, "b", "s_", to_plain=True),
                                           both=both, p0=p0))
        n_gone = cur.rowcount
    return Delta(total, fetched + n_changed, n_gone, time.perf_counter() - began, ranges=cut, key=key, slot=i)


def _from_key_sets(link: Link, unit: Unit, key: tuple[str, ...], i: int, cut: ranges.Ranges,
                   summaries: tuple[sql.Identifier, sql.Identifier], total: int, began: float) -> Delta:
    """The keys to fetch (kept on the Delta) and those to delete (`_dbsync_gone_i`), read off the
    exact summaries."""
    gone = temp_table("gone", i)
    with link.target.cursor() as cur:
        cur.execute(_EMPTY_LIKE.format(gone, key_list(key), only_from(unit.target)))
    found = keysets.differences(link, cut, summaries, gone, limit=MAX_DELTA_KEYS)
    return Delta(total, found.n_fetch, found.n_gone, time.perf_counter() - began, ranges=cut, key=key, slot=i,
                 wanted=found.others, added=found.new)


def fetch_changed(link: Link, unit: Unit, key: tuple[str, ...], i: int, found: Delta) -> int:
    """Prod's version of every new or changed row, by key, into `_dbsync_rows_i` on staging: the
    keys `found.wanted` (as key_texts reads them), or those in `_dbsync_changed_i`; where the
    keys staging lacks are known apart (`found.added`), their rows into `_dbsync_added_i`."""
    with link.target.cursor() as cur:
        wanted = found.wanted
        if wanted is None:
            cur.execute(sql.SQL("SELECT {} FROM {}").format(key_texts(key), temp_table("changed", i)))
            wanted = cur.fetchall()
        _create_rows(cur, unit, i)
        if found.added is not None:
            _create_rows(cur, unit, i, "added")
    return sum(_fetch(link, unit, key, keys, temp_table(name, i))
               for keys, name in ((wanted, "rows"), (found.added or [], "added")))


def _fetch(link: Link, unit: Unit, key: tuple[str, ...], wanted: list[tuple], into: sql.Identifier) -> int:
    if not wanted:
        return 0
    scalar = not unit.source.columns[key[0]].type.endswith("]")
    return stream_copy(link.source, link.target, _rows_out(unit, keys_in(key, wanted, scalar=scalar)),
                       _into(into, unit, binary=True), binary=unit.binary, stop_at=link.copy_deadline()).target_rows


def key_texts(key: tuple[str, ...]) -> sql.Composable:
    """The key's columns as text, to read keys for keys_in: a value Python cannot hold (a date's
    'infinity' becomes date.max) is carried exactly, and the output settings are pinned alike on
    both sessions."""
    return sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in key)


def keys_in(key: tuple[str, ...], wanted: list[tuple], *, scalar: bool = False) -> sql.Composable:
    """`(k0, k1) IN ((…), …)`: the rows of those keys, `wanted` as key_texts reads them (untyped
    literals in the SQL text, which the server reads as the key's types). A key of one column of
    a type other than an array's (`scalar`): `k = ANY('{…}')`, one literal the server reads as an
    array of the key's type — a literal per key costs more to compose than its row to fetch."""
    if scalar and len(key) == 1:
        return sql.SQL("{} = ANY({})").format(sql.Identifier(key[0]), sql.Literal(array_literal(w[0] for w in wanted)))
    values = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(v) for v in w))
                                for w in wanted)
    return sql.SQL("({}) IN ({})").format(key_list(key), values)


def array_literal(texts) -> str:
    """An array's text form, each element quoted (a comma, brace, quote or backslash in a key
    stays the key's)."""
    return "{" + ",".join('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"' for t in texts) + "}"
