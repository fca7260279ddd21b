"""The incremental refresh: per table, only the rows that differ, applied in place.

For a table with a primary key, each server digests its rows as the copy would produce them —
md5 of the row's text, prod's through the masking expressions, inside the sync's snapshot —
and prod's (key, digest) pairs stream into a temporary table on staging, where one join finds
the keys that are new or changed and those staging has but prod lacks. Only those rows travel:
prod's version of each differing row is read by key and streamed into a second temporary
table, then applied with an UPDATE of changed rows and an INSERT of new ones, parents first,
then a DELETE of vanished keys, children first — by the strongly connected components of the
foreign keys among the tables applied (`components`): the tables of one cycle of references in
one statement, whose keys the server checks at its end. Nothing is truncated and no index or
constraint is dropped; the tables are locked in EXCLUSIVE mode, which readers pass and writers
wait for, so nothing written after the comparison survives the sync.

md5 and the row's text are stable across major versions, and both sessions pin every output
setting the text depends on (dbsync.sync.sessions); between servers of one major version, and
for tables whose types allow it, the internal hash_record_extended does the same several times
cheaper (fast_digest).
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass

from psycopg2 import sql

from dbsync.errors import DbSyncError
from dbsync.sync import ranges
from dbsync.sync.copy import stream_copy
from dbsync.sync.plan import Unit

# Above this share of differing rows a full copy of the table is cheaper than the delta.
AUTO_FULL_FRACTION = 0.25
# Keys fetched from prod in one statement (their values are written into the COPY's SQL text).
MAX_DELTA_KEYS = 200_000
# The sample that decides early for a table with one integer key: keys divisible by this.
SAMPLE_MODULUS = 97


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
    how: str = "by digest"  # or "since the last sync" (dbsync.sync.changes)
    ranges: ranges.Ranges | None = None  # how the key was cut, if it was (dbsync.sync.ranges)
    inserted: int = 0  # by the apply
    deleted: int = 0  # vanished keys no longer there after it, whoever removed them (a cascade too)
    key: tuple[str, ...] = ()  # the primary key rows are matched by
    slot: int = 0  # the number in its temporary tables' names (_dbsync_rows_<slot>, …)

    @property
    def target_rows(self) -> int | None:
        """Staging's row count after the apply, where its count before is known."""
        before = self.ranges.target_rows if self.ranges else None
        return None if before is None else int(before) + self.inserted - self.deleted

    @property
    def fraction(self) -> float:
        return (self.changed + self.gone) / max(1, self.source_rows)


def _from(unit_table) -> sql.Composable:
    """ONLY for a plain table (inheritance children are units of their own)."""
    return unit_table.ident if unit_table.relkind == "p" else sql.SQL("ONLY {}").format(unit_table.ident)


# Types whose internal hash agrees with equality *and* with the text a full copy would write
# (numeric without a declared scale does not: 1.0 and 1.00 are equal and hash alike).
_HASHABLE = re.compile(r"^(smallint|integer|bigint|boolean|text|character varying(\(\d+\))?|character\(\d+\)"
                       r"|numeric\(\d+,\d+\)|real|double precision|date|timestamp(\(\d\))? with(out)? time zone"
                       r"|time(\(\d\))? without time zone|uuid|bytea|jsonb|inet|oid)$")


def _same_major(run) -> bool:
    return run.source.info.server_version // 10000 == run.target.info.server_version // 10000


def fast_digest(run, unit: Unit, columns: list[str] | tuple[str, ...] | None = None) -> bool:
    """hash_record_extended instead of md5 of the row's text: several times cheaper, but internal,
    so only between servers of one major version, with identical built-in types (binary COPY's
    condition), each of a type whose hash agrees with its text — of every column the copy sends,
    or of `columns` (the key's, to hash keys)."""
    return _same_major(run) and unit.binary and all(_HASHABLE.match(unit.source.columns[c].type)
                                                    for c in (unit.columns if columns is None else columns))


def _row_digest(items: list[sql.Composable], fast: bool = False) -> sql.Composable:
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(items))
    if fast:  # two seeds: 128 bits, so a missed change is as unlikely as with md5
        return sql.SQL("hash_record_extended({row}, 0)::text || ':' || hash_record_extended({row}, 1)::text").format(
            row=row)
    return sql.SQL("md5({}::text)").format(row)


def _keys(key: tuple[str, ...], alias: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(alias, k) if alias else sql.Identifier(k) for k in key)


def _source_items(unit: Unit) -> list[sql.Composable]:
    """The values the copy would send, column by column (masked where the rules say)."""
    m = unit.masked
    return [(m.expressions.get(c) if m else None) or sql.Identifier(c) for c in unit.columns]


def _source_where(unit: Unit, *conditions: sql.Composable) -> sql.Composable:
    """` WHERE …` for the source: the rules' `where:` (if any) and `conditions`, or nothing."""
    m = unit.masked
    parts = ([sql.SQL("({})").format(sql.SQL(m.where))] if m and m.where else []) + list(conditions)
    return sql.SQL(" WHERE {}").format(sql.SQL(" AND ").join(parts)) if parts else sql.SQL("")


def _match(key: tuple[str, ...], left: str, right: str, right_prefix: str = "") -> sql.Composable:
    """`left.k = right.k AND …` over the key's columns (`right`'s named `<prefix>k`)."""
    return sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(left, k),
                                                           sql.Identifier(right, right_prefix + k)) for k in key)


def sample_fraction(run, unit: Unit, key: tuple[str, ...]) -> float | None:
    """For one integer key: the differing share among the rows whose key is divisible by
    SAMPLE_MODULUS, read from both sides (small); None when the key is not a single integer."""
    col = unit.source.columns[key[0]]
    if len(key) != 1 or col.type not in ("integer", "bigint", "smallint"):
        return None
    k = sql.Identifier(key[0])
    fast = fast_digest(run, unit)
    condition = sql.SQL("{} % {} = 0").format(k, sql.Literal(SAMPLE_MODULUS))
    with run.source.cursor() as cur:
        cur.execute(sql.SQL("SELECT {}, {} FROM {}{}").format(k, _row_digest(_source_items(unit), fast),
                                                             _from(unit.source), _source_where(unit, condition)))
        prod = dict(cur.fetchall())
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
            k, _row_digest([sql.Identifier(c) for c in unit.columns], fast), _from(unit.target), condition))
        staging = dict(cur.fetchall())
    differing = sum(1 for key_, d in prod.items() if staging.get(key_) != d) + len(staging.keys() - prod.keys())
    return differing / max(1, len(prod))


def _temp(name: str, i: int) -> sql.Identifier:
    return sql.Identifier(f"_dbsync_{name}_{i}")


def _copy_format(unit: Unit) -> sql.Composable:
    return sql.SQL(" WITH (FORMAT binary)") if unit.binary else sql.SQL("")


def _rows_out(unit: Unit, *conditions: sql.Composable) -> sql.Composed:
    """The source's COPY of whole rows as the copy would send them (masked), those matching."""
    items = [sql.SQL("{} AS {}").format(e, sql.Identifier(c))
             for e, c in zip(_source_items(unit), unit.columns, strict=True)]
    return sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT{}").format(
        sql.SQL(", ").join(items), _from(unit.source), _source_where(unit, *conditions), _copy_format(unit))


def _into(table: sql.Identifier, unit: Unit, *, binary: bool) -> sql.Composed:
    return sql.SQL("COPY {} FROM STDIN{}").format(table, _copy_format(unit) if binary else sql.SQL(""))


def _create_rows(cur, unit: Unit, i: int) -> None:
    cur.execute(_EMPTY_LIKE.format(_temp("rows", i), sql.SQL(", ").join(sql.Identifier(c) for c in unit.columns),
                                    _from(unit.target)))


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
_REWRITE_CHANGED = sql.SQL("UPDATE {t} AS t SET ({cols}) = ROW({values}) FROM {rows} r WHERE {match}")
_ADD_NEW = sql.SQL("INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {values} FROM {rows} r"
                      " WHERE NOT EXISTS (SELECT 1 FROM {only_t} t WHERE {match})")
_REMOVE_GONE = sql.SQL("DELETE FROM {t} AS t USING {gone} g WHERE {match}")


def diff(run, unit: Unit, key: tuple[str, ...], i: int) -> Delta:
    """Prod's (key, digest) pairs into a temporary table on staging — of the key ranges whose
    summaries of row hashes differ, where the key can be cut (dbsync.sync.ranges), else of every
    row; there, the keys that differ (`_dbsync_changed_i`) and those staging alone has
    (`_dbsync_gone_i`)."""
    began = time.perf_counter()
    fast = fast_digest(run, unit)
    pd, target, source = _temp("prod", i), unit.target, _from(unit.source)
    staged_items = [sql.Identifier("s", c) for c in unit.columns]
    cut = ranges.plan_ranges(run, unit, key, from_=source)
    total, differing = None, _temp("ranges", i)
    if cut:
        summaries = (_temp("summary", i), _temp("staged_summary", i))
        _, total = ranges.summarise(
            run, cut, summaries, ranges.Side(source, _source_where(unit), ranges.hash64(_source_items(unit), fast),
                                             sql.SQL("false")),
            ranges.Side(_from(target), sql.SQL(""), ranges.hash64(staged_items, fast), sql.SQL("false")))
        ranges.find_differing(run, cut, summaries, differing)
    source_join, target_join = ranges.restrictions(run, cut, differing)
    with run.target.cursor() as cur:
        cur.execute(_DIGESTS_TABLE.format(pd, _keys(key), _from(target)))
    copy_out = sql.SQL("COPY (SELECT {}, {} FROM {}{}{}) TO STDOUT").format(
        _keys(key), _row_digest(_source_items(unit), fast), source, source_join, _source_where(unit))
    sent = stream_copy(run.source, run.target, copy_out, _into(pd, unit, binary=False),
                       stop_at=run.budget.stop_at(run.reserve()))
    match = _match(key, "s", "p")
    with run.target.cursor() as cur:
        cur.execute(_CHANGED_BY_DIGEST.format(
            ch=_temp("changed", i), pk=_keys(key, "p"), pd=pd, t=_from(target), match=match,
            k0=sql.Identifier(key[0]), staged=_row_digest(staged_items, fast)))
        n_changed = cur.rowcount
        cur.execute(_GONE_BY_DIGEST.format(g=_temp("gone", i), sk=_keys(key, "s"),
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
        return sql.SQL("({})").format(_STAGED_KEYS.format(s_keys=_keys(key, "s"), t=_from(unit.target),
                                                          restrict=sql.SQL("")))
    cur.execute(ranges.MATERIALISED.format(_temp("staged", i), _STAGED_KEYS.format(
        s_keys=_keys(key, "s"), t=_from(unit.target), restrict=restriction)))
    return _temp("staged", i)


def recent_share(run, unit: Unit, recent: sql.Composable) -> tuple[int, int]:
    """(rows written since the last sync, all rows) on prod: one scan with a cheap filter, before
    any key or row is streamed, so that a table mostly rewritten goes straight to a full copy."""
    with run.source.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FILTER (WHERE {}), count(*) FROM {}{}").format(
            recent, _from(unit.source), _source_where(unit)))
        return cur.fetchone()


def _prefixed(key: tuple[str, ...], alias: str, prefix: str, *, to_plain: bool = False) -> sql.Composable:
    """`alias.k AS prefix_k, …`, or with `to_plain` `prefix_k AS k, …`."""
    return sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(sql.Identifier(prefix + k), sql.Identifier(k)) if to_plain
        else sql.SQL("{} AS {}").format(sql.Identifier(alias, k), sql.Identifier(prefix + k)) for k in key)


def diff_recent(run, unit: Unit, key: tuple[str, ...], i: int, last) -> Delta:
    """What differs, from what the last sync saw (dbsync.sync.changes): prod's recent rows into
    `_dbsync_rows_i`, the other keys to fetch into `_dbsync_changed_i`, vanished ones into
    `_dbsync_gone_i` — without digesting a row, and where the key allows, comparing only the key
    ranges whose summaries differ (dbsync.sync.ranges)."""
    from dbsync.sync.changes import recent_source_filter, recent_target_filter

    began = time.perf_counter()
    recent, source = recent_source_filter(last), _from(unit.source)
    fast = fast_digest(run, unit, key)
    cut = ranges.plan_ranges(run, unit, key, from_=source)
    summaries = (_temp("summary", i), _temp("staged_summary", i))
    if cut:
        n_recent, total = ranges.summarise(
            run, cut, summaries, ranges.Side(source, _source_where(unit), ranges.key_hash(key, fast), recent),
            ranges.Side(_from(unit.target), sql.SQL(""), ranges.key_hash(key, fast, "s"),
                        recent_target_filter(last, sql.Identifier("s", "xmin"))))
    else:
        n_recent, total = recent_share(run, unit, recent)
    if n_recent > AUTO_FULL_FRACTION * max(1, total):
        return Delta(total, n_recent, 0, time.perf_counter() - began)
    pk, rows, both = _temp("prodkeys", i), _temp("rows", i), _temp("keys", i)
    stop_at = run.budget.stop_at(run.reserve())
    with run.target.cursor() as cur:
        cur.execute(_EMPTY_LIKE.format(pk, _keys(key), _from(unit.target)))
        _create_rows(cur, unit, i)
    fetched = stream_copy(run.source, run.target, _rows_out(unit, recent), _into(rows, unit, binary=True),
                          binary=unit.binary, stop_at=stop_at).target_rows
    differing = _temp("ranges", i)
    if cut:
        ranges.find_differing(run, cut, summaries, differing, ranges.Fetched(
            rows, _from(unit.target), _match(key, "s", "r"), ranges.key_hash(key, fast, "r")))
    source_join, target_join = ranges.restrictions(run, cut, differing)
    keys_out = sql.SQL("COPY (SELECT {} FROM {}{}{}) TO STDOUT{}").format(
        _keys(key), source, source_join, _source_where(unit), _copy_format(unit))
    stream_copy(run.source, run.target, keys_out, _into(pk, unit, binary=True), binary=unit.binary, stop_at=stop_at)
    p0 = sql.Identifier(f"p_{key[0]}")
    with run.target.cursor() as cur:
        cur.execute(_JOINED_KEYS.format(
            both=both, pk_cols=_prefixed(key, "p", "p_"), sk_cols=_prefixed(key, "s", "s_"), pk=pk,
            staged=_staged_keys(cur, unit, key, i, target_join),
            match=_match(key, "s", "p"), k0=sql.Identifier(key[0]),
            recent=recent_target_filter(last, sql.Identifier("s", "dbsync_xmin"))))
        cur.execute(_CHANGED_FROM_JOIN.format(ch=_temp("changed", i), keys=_prefixed(key, "b", "p_", to_plain=True),
                                              both=both, p0=p0, rows=rows, in_rows=_match(key, "r", "b", "p_")))
        n_changed = cur.rowcount
        cur.execute(_GONE_FROM_JOIN.format(g=_temp("gone", i), keys=_prefixed(key, "b", "s_", to_plain=True),
                                           both=both, p0=p0))
        n_gone = cur.rowcount
    return Delta(total, fetched + n_changed, n_gone, time.perf_counter() - began, ranges=cut, key=key, slot=i)


def fetch_changed(run, unit: Unit, key: tuple[str, ...], i: int) -> int:
    """Prod's version of every new or changed row, by key, into `_dbsync_rows_i` on staging."""
    rows = _temp("rows", i)
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {}").format(_keys(key), _temp("changed", i)))
        wanted = cur.fetchall()
        _create_rows(cur, unit, i)
    if not wanted:
        return 0
    values = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(v) for v in w))
                                for w in wanted)
    condition = sql.SQL("({}) IN ({})").format(_keys(key), values)
    return stream_copy(run.source, run.target, _rows_out(unit, condition), _into(rows, unit, binary=True),
                       binary=unit.binary, stop_at=run.budget.stop_at(run.reserve())).target_rows


def _upsert_statements(unit: Unit, key: tuple[str, ...], i: int) -> tuple[sql.Composable | None, sql.Composable]:
    """(the UPDATE of changed rows or None when only key columns travel, the INSERT of new ones)."""
    rows, key_match = _temp("rows", i), _match(key, "t", "r")
    others = [c for c in unit.columns if c not in key]
    match = key_match
    if others and all(_HASHABLE.match(unit.target.columns[c].type) for c in others):
        # Only rows that really differ are written (a row fetched again, unchanged, costs no tuple).
        match = sql.SQL("{} AND ({}) IS DISTINCT FROM ({})").format(
            key_match, sql.SQL(", ").join(sql.Identifier("t", c) for c in others),
            sql.SQL(", ").join(sql.Identifier("r", c) for c in others))
    update = _REWRITE_CHANGED.format(
        t=unit.target.ident, cols=sql.SQL(", ").join(sql.Identifier(c) for c in others),
        values=sql.SQL(", ").join(sql.Identifier("r", c) for c in others), rows=rows, match=match) if others else None
    insert = _ADD_NEW.format(
        t=unit.target.ident, cols=sql.SQL(", ").join(sql.Identifier(c) for c in unit.columns),
        values=sql.SQL(", ").join(sql.Identifier("r", c) for c in unit.columns), rows=rows,
        only_t=_from(unit.target), match=key_match)
    return update, insert


def upsert(run, unit: Unit, key: tuple[str, ...], i: int) -> int:
    """Changed rows updated in place, then new ones inserted: the table's own rows, never re-keyed.
    Returns the rows inserted."""
    update, insert = _upsert_statements(unit, key, i)
    with run.target.cursor() as cur:
        if update is not None:
            cur.execute(update)
        cur.execute(insert)
        return cur.rowcount


def _together(parts: list[tuple[str, sql.Composable]], result: sql.Composable) -> sql.Composed:
    """`WITH name AS (statement), … SELECT result`: statements run as one, so a foreign key that is
    not deferred is checked once, at the end of it, against all of their rows."""
    return sql.SQL("WITH {} SELECT {}").format(
        sql.SQL(", ").join(sql.SQL("{} AS ({})").format(sql.Identifier(name), st) for name, st in parts), result)


def upsert_together(run, members: list[tuple[Unit, tuple[str, ...], int]]) -> list[int]:
    """The upserts of the tables of one foreign-key cycle (or of a table referencing itself) in one
    statement: rows that reference each other go in together, NOT NULL columns included, with no
    order to find and no constraint deferred. Returns the rows inserted into each."""
    parts, counts = [], []
    for n, (unit, key, i) in enumerate(members):
        update, insert = _upsert_statements(unit, key, i)
        if update is not None:
            parts.append((f"changed_{n}", update))
        parts.append((f"new_{n}", sql.SQL("{} RETURNING 1").format(insert)))
        counts.append(sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(f"new_{n}")))
    with run.target.cursor() as cur:
        cur.execute(_together(parts, sql.SQL(", ").join(counts)))
        return [int(c) for c in cur.fetchone()]


# Joins of a delta (at most AUTO_FULL_FRACTION of a table) with its table: by key, through the
# index. Left to itself the planner often reads the whole table in key order for a merge join.
_PROBE_SETTINGS = ("enable_mergejoin", "enable_hashjoin")


@contextmanager
def probing(conn):
    """Nested loops over the key's index for the statements inside, then the settings as they
    were (SET LOCAL would last to the COMMIT, through the foreign keys' validation)."""
    def select(template: str, *args) -> sql.Composable:
        return sql.SQL("SELECT {}").format(sql.SQL(", ").join(
            sql.SQL(template).format(sql.Literal(name), *map(sql.Literal, values))
            for name, *values in zip(_PROBE_SETTINGS, *args, strict=True)))

    with conn.cursor() as cur:
        cur.execute(select("current_setting({})"))
        before = cur.fetchone()
        cur.execute(select("set_config({}, 'off', true)"))
    yield
    with conn.cursor() as cur:  # not reached after an error: the rollback undoes set_config
        cur.execute(select("set_config({}, {}, true)", before))


def _remove_gone(unit: Unit, key: tuple[str, ...], i: int) -> sql.Composed:
    return _REMOVE_GONE.format(t=_from(unit.target), gone=_temp("gone", i), match=_match(key, "t", "g"))


def delete_gone(run, unit: Unit, key: tuple[str, ...], i: int) -> None:
    with run.target.cursor() as cur:
        cur.execute(_remove_gone(unit, key, i))


def delete_together(run, members: list[tuple[Unit, tuple[str, ...], int]]) -> None:
    """The deletes of the tables of one foreign-key cycle in one statement (see upsert_together)."""
    with run.target.cursor() as cur:
        cur.execute(_together([(f"gone_{n}", _remove_gone(unit, key, i)) for n, (unit, key, i) in enumerate(members)],
                              sql.SQL("1")))


def still_there(run, unit: Unit, key: tuple[str, ...], i: int) -> int:
    """How many of the keys prod lacks staging still has: 0 after a complete apply. A DELETE's own
    row count would miss rows an ON DELETE CASCADE from another table removed first."""
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} g WHERE EXISTS (SELECT 1 FROM {} t WHERE {})").format(
            _temp("gone", i), _from(unit.target), _match(key, "t", "g")))
        return int(cur.fetchone()[0])


def components(units: list[Unit], references: dict) -> list[list[Unit]]:
    """The units grouped by the foreign keys among them into strongly connected components (the
    tables of one cycle of references together), each after every component it references:
    Tarjan's algorithm, which closes a component only once all it reaches are closed. Foreign keys
    to tables outside `units` do not order anything: those tables' rows are not being written."""
    by_key = {u.target.key: u for u in units}
    edges = {k: sorted({r.target for r in references.get(k, ()) if r.target in by_key}) for k in sorted(by_key)}
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    out: list[list[Unit]] = []

    def visit(node) -> tuple:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter(edges[node])

    for root in edges:
        if root in index:
            continue
        path = [visit(root)]
        while path:
            node, successors = path[-1]
            nxt = next(successors, None)
            if nxt is None:
                path.pop()
                if path:
                    low[path[-1][0]] = min(low[path[-1][0]], low[node])
                if low[node] == index[node]:
                    cut = stack.index(node)
                    out.append([by_key[k] for k in sorted(stack[cut:])])
                    on_stack.difference_update(stack[cut:])
                    del stack[cut:]
            elif nxt not in index:
                path.append(visit(nxt))
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
    return out


def cyclic(component: list[Unit], references: dict) -> bool:
    """More than one table, or a table that references itself."""
    return len(component) > 1 or any(r.target == component[0].target.key
                                     for r in references.get(component[0].target.key, ()))
