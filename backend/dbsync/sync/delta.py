"""The incremental refresh: per table, only the rows that differ, applied in place.

For a table with a primary key, each server digests its rows as the copy would produce them —
md5 of the row's text, prod's through the masking expressions, inside the sync's snapshot —
and prod's (key, digest) pairs stream into a temporary table on staging, where one join finds
the keys that are new or changed and those staging has but prod lacks. Only those rows travel:
prod's version of each differing row is read by key and streamed into a second temporary
table, then applied with an UPDATE of changed rows, an INSERT of new ones (parents before
children), and a DELETE of vanished keys (children before parents). Nothing is truncated and no
index or constraint is dropped; the tables are locked in EXCLUSIVE mode, which readers pass and
writers wait for, so nothing written after the comparison survives the sync.

md5 and the row's text are stable across major versions, and both sessions pin every output
setting the text depends on (dbsync.sync.sessions); between servers of one major version, and
for tables whose types allow it, the internal hash_record_extended does the same several times
cheaper (fast_digest).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from psycopg2 import sql

from dbsync.errors import DbSyncError
from dbsync.sync.copy import stream_copy
from dbsync.sync.plan import Unit

# Above this share of differing rows a full copy of the table is cheaper than the delta.
AUTO_FULL_FRACTION = 0.25
# Keys fetched from prod in one statement (their values are written into the COPY's SQL text).
MAX_DELTA_KEYS = 200_000
# The sample that decides early for a table with one integer key: keys divisible by this.
SAMPLE_MODULUS = 97


class DeltaConflict(DbSyncError):
    """Applying a delta broke a constraint; the sync runs again in full."""


@dataclass
class Delta:
    source_rows: int = 0
    changed: int = 0  # new or different on prod
    gone: int = 0  # on staging, not on prod
    digest_seconds: float = 0.0
    how: str = "by digest"  # or "since the last sync" (dbsync.sync.changes)

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


def fast_digest(run, unit: Unit) -> bool:
    """hash_record_extended instead of md5 of the row's text: several times cheaper, but internal,
    so only between servers of one major version, with identical built-in types (binary COPY's
    condition), each of a type whose hash agrees with its text."""
    same_major = run.source.info.server_version // 10000 == run.target.info.server_version // 10000
    return same_major and unit.binary and all(_HASHABLE.match(unit.source.columns[c].type) for c in unit.columns)


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


def _source_filter(unit: Unit) -> sql.Composable:
    m = unit.masked
    return sql.SQL(" WHERE ({})").format(sql.SQL(m.where)) if m and m.where else sql.SQL("")


def sample_fraction(run, unit: Unit, key: tuple[str, ...]) -> float | None:
    """For one integer key: the differing share among the rows whose key is divisible by
    SAMPLE_MODULUS, read from both sides (small); None when the key is not a single integer."""
    col = unit.source.columns[key[0]]
    if len(key) != 1 or col.type not in ("integer", "bigint", "smallint"):
        return None
    k = sql.Identifier(key[0])
    fast = fast_digest(run, unit)
    condition = sql.SQL("{} % {} = 0").format(k, sql.Literal(SAMPLE_MODULUS))
    src_where = _source_filter(unit)
    src_where = (sql.SQL("{} AND {}").format(src_where, condition) if unit.masked and unit.masked.where
                 else sql.SQL(" WHERE {}").format(condition))
    with run.source.cursor() as cur:
        cur.execute(sql.SQL("SELECT {}, {} FROM {}{}").format(k, _row_digest(_source_items(unit), fast),
                                                             _from(unit.source), src_where))
        prod = dict(cur.fetchall())
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT {}, {} FROM {} WHERE {}").format(
            k, _row_digest([sql.Identifier(c) for c in unit.columns], fast), _from(unit.target), condition))
        staging = dict(cur.fetchall())
    differing = sum(1 for key_, d in prod.items() if staging.get(key_) != d) + len(staging.keys() - prod.keys())
    return differing / max(1, len(prod))


def _temp(name: str, i: int) -> sql.Identifier:
    return sql.Identifier(f"_dbsync_{name}_{i}")


def diff(run, unit: Unit, key: tuple[str, ...], i: int) -> Delta:
    """Prod's (key, digest) pairs into a temporary table on staging; there, the keys that differ
    (`_dbsync_changed_i`) and those staging alone has (`_dbsync_gone_i`)."""
    began = time.perf_counter()
    fast = fast_digest(run, unit)
    pd, changed, gone = _temp("prod", i), _temp("changed", i), _temp("gone", i)
    target = unit.target
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, ''::text AS dbsync_digest"
                            " FROM {} WITH NO DATA").format(pd, _keys(key), _from(target)))
    copy_out = sql.SQL("COPY (SELECT {}, {} FROM {}{}) TO STDOUT").format(
        _keys(key), _row_digest(_source_items(unit), fast), _from(unit.source), _source_filter(unit))
    copy_in = sql.SQL("COPY {} FROM STDIN").format(pd)
    sent = stream_copy(run.source, run.target, copy_out, copy_in, stop_at=run.budget.stop_at(run.reserve()))
    match = sql.SQL(" AND ").join(sql.SQL("s.{k} = p.{k}").format(k=sql.Identifier(k)) for k in key)
    staged = _row_digest([sql.Identifier("s", c) for c in unit.columns], fast)
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("CREATE TEMP TABLE {ch} ON COMMIT DROP AS SELECT {pk} FROM {pd} p"
                            " LEFT JOIN {t} s ON {match} WHERE s.{k0} IS NULL OR {staged} <> p.dbsync_digest").format(
            ch=changed, pk=_keys(key, "p"), pd=pd, t=_from(target), match=match, k0=sql.Identifier(key[0]),
            staged=staged))
        n_changed = cur.rowcount
        cur.execute(sql.SQL("CREATE TEMP TABLE {g} ON COMMIT DROP AS SELECT {sk} FROM {t} s"
                            " WHERE NOT EXISTS (SELECT 1 FROM {pd} p WHERE {match})").format(
            g=gone, sk=_keys(key, "s"), t=_from(target), pd=pd, match=match))
        n_gone = cur.rowcount
    return Delta(sent.source_rows, n_changed, n_gone, time.perf_counter() - began)


def _create_rows(cur, unit: Unit, i: int) -> None:
    cur.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        _temp("rows", i), sql.SQL(", ").join(sql.Identifier(c) for c in unit.columns), _from(unit.target)))


def _copy_format(unit: Unit) -> sql.Composable:
    return sql.SQL(" WITH (FORMAT binary)") if unit.binary else sql.SQL("")


def recent_share(run, unit: Unit, recent: sql.Composable) -> tuple[int, int]:
    """(rows written since the last sync, all rows) on prod: one scan with a cheap filter, before
    any key or row is streamed, so that a table mostly rewritten goes straight to a full copy."""
    with run.source.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FILTER (WHERE {}), count(*) FROM {}{}").format(
            recent, _from(unit.source), _source_filter(unit)))
        return cur.fetchone()


def diff_recent(run, unit: Unit, key: tuple[str, ...], i: int, last) -> Delta:
    """What differs, from what the last sync saw (dbsync.sync.changes): prod's recent rows into
    `_dbsync_rows_i`, the other keys to fetch into `_dbsync_changed_i`, vanished ones into
    `_dbsync_gone_i` — without digesting a row."""
    from dbsync.sync.changes import recent_source_filter, recent_target_filter

    began = time.perf_counter()
    recent = recent_source_filter(last)
    n_recent, total = recent_share(run, unit, recent)
    if n_recent > AUTO_FULL_FRACTION * max(1, total):
        return Delta(total, n_recent, 0, time.perf_counter() - began)
    pk, rows, changed, gone = _temp("prodkeys", i), _temp("rows", i), _temp("changed", i), _temp("gone", i)
    stop_at = run.budget.stop_at(run.reserve())
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
            pk, _keys(key), _from(unit.target)))
        _create_rows(cur, unit, i)
    where = _source_filter(unit)
    keys_out = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT{}").format(_keys(key), _from(unit.source), where,
                                                                       _copy_format(unit))
    sent = stream_copy(run.source, run.target, keys_out, sql.SQL("COPY {} FROM STDIN{}").format(pk, _copy_format(unit)),
                       binary=unit.binary, stop_at=stop_at)
    where = sql.SQL("{} AND {}").format(where, recent) if unit.masked and unit.masked.where \
        else sql.SQL(" WHERE {}").format(recent)
    items = [sql.SQL("{} AS {}").format(e, sql.Identifier(c)) for e, c in zip(_source_items(unit), unit.columns,
                                                                              strict=True)]
    rows_out = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT{}").format(sql.SQL(", ").join(items), _from(unit.source),
                                                                       where, _copy_format(unit))
    fetched = stream_copy(run.source, run.target, rows_out,
                          sql.SQL("COPY {} FROM STDIN{}").format(rows, _copy_format(unit)), binary=unit.binary,
                          stop_at=stop_at).target_rows
    match = sql.SQL(" AND ").join(sql.SQL("s.{k} = p.{k}").format(k=sql.Identifier(k)) for k in key)
    both = _temp("keys", i)
    pk_cols = sql.SQL(", ").join(sql.SQL("p.{k} AS {p}").format(k=sql.Identifier(k), p=sql.Identifier(f"p_{k}"))
                                 for k in key)
    sk_cols = sql.SQL(", ").join(sql.SQL("s.{k} AS {s}").format(k=sql.Identifier(k), s=sql.Identifier(f"s_{k}"))
                                 for k in key)
    p0 = sql.Identifier(f"p_{key[0]}")
    with run.target.cursor() as cur:
        # One hash join of prod's keys with staging's rows: keys only one side has, and staging's
        # rows written since the last sync; everything else is the same on both sides.
        cur.execute(sql.SQL(
            "CREATE TEMP TABLE {both} ON COMMIT DROP AS SELECT {pk_cols}, {sk_cols} FROM {pk} p FULL JOIN {t} s"
            " ON {match} WHERE p.{k0} IS NULL OR s.{k0} IS NULL OR {recent}").format(
            both=both, pk_cols=pk_cols, sk_cols=sk_cols, pk=pk, t=_from(unit.target), match=match,
            k0=sql.Identifier(key[0]), recent=recent_target_filter(last, "s")))
        renamed = sql.SQL(", ").join(sql.SQL("{} AS {}").format(sql.Identifier(f"p_{k}"), sql.Identifier(k))
                                     for k in key)
        in_rows = sql.SQL(" AND ").join(sql.SQL("r.{k} = b.{pk}").format(k=sql.Identifier(k),
                                                                         pk=sql.Identifier(f"p_{k}")) for k in key)
        cur.execute(sql.SQL("CREATE TEMP TABLE {ch} ON COMMIT DROP AS SELECT {renamed} FROM {both} b"
                            " WHERE b.{p0} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {rows} r WHERE {in_rows})").format(
            ch=changed, renamed=renamed, both=both, p0=p0, rows=rows, in_rows=in_rows))
        n_changed = cur.rowcount
        cur.execute(sql.SQL("CREATE TEMP TABLE {g} ON COMMIT DROP AS SELECT {renamed} FROM {both} b"
                            " WHERE b.{p0} IS NULL").format(
            g=gone, both=both, p0=p0, renamed=sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(sql.Identifier(f"s_{k}"), sql.Identifier(k)) for k in key)))
        n_gone = cur.rowcount
    return Delta(sent.source_rows, fetched + n_changed, n_gone, time.perf_counter() - began)


def fetch_changed(run, unit: Unit, key: tuple[str, ...], i: int) -> int:
    """Prod's version of every new or changed row, by key, into `_dbsync_rows_i` on staging."""
    rows, changed = _temp("rows", i), _temp("changed", i)
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {}").format(_keys(key), changed))
        wanted = cur.fetchall()
        _create_rows(cur, unit, i)
    if not wanted:
        return 0
    keys = sql.SQL("({})").format(_keys(key))
    values = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(v) for v in w))
                                for w in wanted)
    where = _source_filter(unit)
    condition = sql.SQL("{} IN ({})").format(keys, values)
    where = (sql.SQL("{} AND {}").format(where, condition) if unit.masked and unit.masked.where
             else sql.SQL(" WHERE {}").format(condition))
    items = [sql.SQL("{} AS {}").format(e, sql.Identifier(c)) for e, c in zip(_source_items(unit), unit.columns,
                                                                              strict=True)]
    copy_out = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT{}").format(
        sql.SQL(", ").join(items), _from(unit.source), where,
        sql.SQL(" WITH (FORMAT binary)") if unit.binary else sql.SQL(""))
    copy_in = sql.SQL("COPY {} FROM STDIN{}").format(rows, sql.SQL(" WITH (FORMAT binary)") if unit.binary
                                                      else sql.SQL(""))
    return stream_copy(run.source, run.target, copy_out, copy_in, binary=unit.binary,
                       stop_at=run.budget.stop_at(run.reserve())).target_rows


def upsert(run, unit: Unit, key: tuple[str, ...], i: int) -> None:
    """Changed rows updated in place, new ones inserted: the table's own rows, never re-keyed."""
    rows, t = _temp("rows", i), unit.target.ident
    match = key_match = sql.SQL(" AND ").join(sql.SQL("t.{k} = r.{k}").format(k=sql.Identifier(k)) for k in key)
    others = [c for c in unit.columns if c not in key]
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in unit.columns)
    if others and all(_HASHABLE.match(unit.target.columns[c].type) for c in others):
        # Only rows that really differ are written (a row fetched again, unchanged, costs no tuple).
        match = sql.SQL("{} AND ({}) IS DISTINCT FROM ({})").format(
            match, sql.SQL(", ").join(sql.Identifier("t", c) for c in others),
            sql.SQL(", ").join(sql.Identifier("r", c) for c in others))
    with run.target.cursor() as cur:
        if others:
            cur.execute(sql.SQL("UPDATE {} AS t SET ({}) = ROW({}) FROM {} r WHERE {}").format(
                t, sql.SQL(", ").join(sql.Identifier(c) for c in others),
                sql.SQL(", ").join(sql.Identifier("r", c) for c in others), rows, match))
        cur.execute(sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {} r"
                            " WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE {})").format(
            t, cols, sql.SQL(", ").join(sql.Identifier("r", c) for c in unit.columns), rows, _from(unit.target),
            key_match))


def delete_gone(run, unit: Unit, key: tuple[str, ...], i: int) -> int:
    match = sql.SQL(" AND ").join(sql.SQL("t.{k} = g.{k}").format(k=sql.Identifier(k)) for k in key)
    with run.target.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {} AS t USING {} g WHERE {}").format(
            _from(unit.target), _temp("gone", i), match))
        return cur.rowcount


def parents_first(units: list[Unit], references: dict) -> list[Unit]:
    """The units ordered so that a table comes after every synced table it references (a cycle
    keeps its remaining tables in name order)."""
    by_key = {u.target.key: u for u in units}
    deps = {u.target.key: {r.target for r in references.get(u.target.key, ()) if r.target in by_key
                           and r.target != u.target.key} for u in units}
    ordered: list[Unit] = []
    while deps:
        ready = sorted(k for k, d in deps.items() if not d) or sorted(deps)[:1]
        for k in ready:
            ordered.append(by_key[k])
            del deps[k]
        for d in deps.values():
            d.difference_update(ready)
    return ordered
