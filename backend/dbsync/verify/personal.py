"""No raw personal value on staging: every masked column checked against prod's raw values.

Values are compared as 64-bit hashes under a key made at random for the run (never the masking
key, which stays on prod's session); prod's hashes of raw values live only in staging's temporary
tables, gone at the end of the run. Between servers of one major version the hash is the internal
hashtextextended seeded with the run's key (several times cheaper); otherwise the first 64 bits of
sha256(key ‖ value), which every version computes alike.

Row by row, by key: staging's value must not be prod's raw value, unless the strategy maps that
value to itself (`year` of a January 1st, `redact` of x's). Where the comparison found a key range
the same on both sides (dbsync.verify.compare), staging's rows there are prod's masked rows, so
each value is the strategy's output for prod's value in that row: only the ranges that differ are
read again, row by row. For `email`, whose output is never a real address, no raw prod value may
appear anywhere in the column: every output has one form (strategies.email_form), so while no raw
prod value has that form, only staging's values outside it can be prod's, and those few are looked
for among prod's. A staging write holding a raw value counts too: whoever wrote it, it is personal
data on staging.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync.errors import shown_name
from dbsync.masking.strategies import email_form
from dbsync.sync import delta
from dbsync.sync.copy import stream_copy
from dbsync.sync.link import Link
from dbsync.sync.units import Unit
from dbsync.verify.compare import SAMPLE_KEYS, TableCompared, source_conditions, where

_HASH = sql.SQL("('x' || left(encode(sha256({k} || convert_to(({v})::text, 'UTF8')), 'hex'), 16))::bit(64)::bigint")
_FAST_HASH = sql.SQL("hashtextextended(({v})::text, {seed})")
_RAW_TABLE = sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {}, {} FROM {} WITH NO DATA")
_SAME_ROW = sql.SQL("SELECT count(*), (array_agg(concat_ws(', ', {shown})))[1:{n}] FROM {raw} p"
                    " JOIN {t} ON {match} WHERE {staged} = p.{r} AND p.{m} IS DISTINCT FROM p.{r}")
_ANYWHERE = sql.SQL("SELECT count(*), (array_agg(concat_ws(', ', {shown})))[1:{n}] FROM {t}"
                    " WHERE {staged} IN (SELECT p.{r} FROM {raw} p WHERE p.{r} IS NOT NULL)")


@dataclass
class Leak:
    table: str
    column: str
    strategy: str
    rows: int
    keys: list[str] = field(default_factory=list)
    anywhere: bool = False  # found anywhere in the column, not only in the row of its key

    def detail(self) -> str:
        where_ = "anywhere in the column" if self.anywhere else "in the same rows as on prod"
        return (f"{self.rows} raw prod value(s) of {self.strategy} column {shown_name(self.column)} {where_}"
                + (f" (keys: {'; '.join(self.keys)})" if self.keys else ""))


@dataclass(frozen=True)
class RunKey:
    """The run's own hash key: random, used for this run only, unrelated to the masking key."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    fast: bool = False  # both servers of one major version: hashtextextended, seeded with the key

    def hash(self, value: sql.Composable) -> sql.Composable:
        if self.fast:
            return _FAST_HASH.format(v=value, seed=sql.Literal(int.from_bytes(self.key[:8], "big", signed=True)))
        return _HASH.format(k=sql.Literal(self.key), v=value)


def run_key(link: Link) -> RunKey:
    same_major = link.source.info.server_version // 10000 == link.target.info.server_version // 10000
    return RunKey(fast=same_major)


def masked_columns(unit: Unit) -> list[tuple[str, str]]:
    """(column, strategy) of every column the rules change (not `keep`)."""
    m = unit.masked
    if m is None or not m.copy_rows:
        return []
    return [(c, m.rule.columns[c].strategy) for c in unit.columns if c in m.expressions]


def check_table(link: Link, unit: Unit, key: tuple[str, ...], run: RunKey, slot: int,
                compared: TableCompared) -> list[Leak]:
    """The raw values of every masked column of one table on staging; `compared`: the table's
    comparison, whose matching ranges need no second look."""
    columns = masked_columns(unit)
    if not columns:
        return []
    emails = [c for c, strategy in columns if strategy == "email"]
    everywhere = [c for c in emails if not _outside_form_only(link, unit, c)]
    rows = columns if key and compared.differ else [(c, s) for c, s in columns if c in everywhere]
    leaks = _raw_rows(link, unit, key, run, slot, rows, everywhere, compared) if rows else []
    for column in emails:
        if column not in everywhere:
            leaks += _outside_form(link, unit, key, run, column)
    return leaks


def _raw_rows(link: Link, unit: Unit, key: tuple[str, ...], run: RunKey, slot: int, columns: list[tuple[str, str]],
              everywhere: list[str], compared: TableCompared) -> list[Leak]:
    """Prod's (key, raw hash, masked hash) per column into a temporary table on staging — of the
    differing ranges only, unless a column in `everywhere` needs every raw value — then
    staging's values against them."""
    raw = sql.Identifier(f"_dbsync_verify_raw_{slot}")
    names = [(sql.Identifier(f"r{i}"), sql.Identifier(f"m{i}")) for i in range(len(columns))]
    keys = key or ()
    hashes = sql.SQL(", ").join(sql.SQL("0::bigint AS {}, 0::bigint AS {}").format(r, m) for r, m in names)
    key_items = [sql.Identifier(k) for k in keys]
    with link.target.cursor() as cur:
        cur.execute(_RAW_TABLE.format(raw, sql.SQL(", ").join(key_items + [sql.SQL("1 AS dbsync_one")]), hashes,
                                      delta.only_from(unit.target)))
    items = [*key_items, sql.SQL("1")]
    for column, _ in columns:
        items += [run.hash(sql.Identifier(column)), run.hash(unit.masked.expressions[column])]
    conditions = [*source_conditions(unit), *([] if everywhere else _only_differing(link, keys, compared))]
    copy_out = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT").format(
        sql.SQL(", ").join(items), delta.only_from(unit.source), where(*conditions))
    stream_copy(link.source, link.target, copy_out, sql.SQL("COPY {} FROM STDIN").format(raw),
                stop_at=link.copy_deadline())
    leaks = []
    with link.target.cursor() as cur:
        for (column, strategy), (r, m) in zip(columns, names, strict=True):
            parts = {"shown": _shown(keys), "n": sql.Literal(SAMPLE_KEYS), "raw": raw, "r": r,
                     "staged": run.hash(sql.Identifier("s", column)), "t": _staging(unit)}
            if keys:
                cur.execute(_SAME_ROW.format(match=delta.match_keys(keys, "s", "p"), m=m, **parts))
                n, sample = cur.fetchone()
                if n:
                    leaks.append(Leak(unit.label, column, strategy, int(n), _labelled(keys, sample)))
            if column in everywhere:
                cur.execute(_ANYWHERE.format(**parts))
                n, sample = cur.fetchone()
                if n:
                    leaks.append(Leak(unit.label, column, strategy, int(n), _labelled(keys, sample), anywhere=True))
        cur.execute(sql.SQL("DROP TABLE {}").format(raw))
    return leaks


def _only_differing(link: Link, keys: tuple[str, ...], compared: TableCompared) -> list[sql.Composable]:
    """Prod's rows to read again: those whose staging row differs from prod's masked row (the
    comparison's differing rows, by key), else those of the differing ranges."""
    if not keys or compared.cut is None:
        return []
    if compared.rows_differing is not None:
        with link.target.cursor() as cur:
            cur.execute(sql.SQL("SELECT {} FROM {} WHERE dbsync_on_staging LIMIT {}").format(
                delta.key_texts(tuple(f"dbsync_key_{i}" for i in range(len(keys)))),
                compared.rows_differing, sql.Literal(delta.MAX_DELTA_KEYS + 1)))
            wanted = cur.fetchall()
        if not wanted:
            return [sql.SQL("false")]
        if len(wanted) <= delta.MAX_DELTA_KEYS:
            return [delta.keys_in(keys, wanted)]
    chosen = sql.Literal("{" + ",".join(map(str, compared.buckets)) + "}")
    return [sql.SQL("{} = ANY({}::bigint[])").format(compared.cut.bucket, chosen)]


def _outside_form_only(link: Link, unit: Unit, column: str) -> bool:
    """Whether no raw prod value of `column` has the form of the email strategy's outputs: then
    a staging value of that form is an output, never a raw value (one scan of prod's column)."""
    with link.source.cursor() as cur:
        cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {}{})").format(
            delta.only_from(unit.source), where(*source_conditions(unit), email_form(sql.Identifier(column)))))
        return cur.fetchone()[0]


def _outside_form(link: Link, unit: Unit, key: tuple[str, ...], run: RunKey, column: str) -> list[Leak]:
    """Staging's values of `column` that no email output could be, looked for among prod's raw
    values (as the run's hashes; few, unless staging's column is mostly hand-written)."""
    staged = run.hash(sql.Identifier("s", column))
    with link.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT DISTINCT {} FROM {} WHERE s.{} IS NOT NULL AND NOT {}").format(
            staged, _staging(unit), sql.Identifier(column), email_form(sql.Identifier("s", column))))
        candidates = [h for (h,) in cur.fetchall()]
    if not candidates:
        return []
    raw = run.hash(sql.Identifier(column))
    with link.source.cursor() as cur:
        cur.execute(sql.SQL("SELECT DISTINCT {} FROM {}{}").format(
            raw, delta.only_from(unit.source),
            where(*source_conditions(unit), sql.SQL("{} = ANY(%s::bigint[])").format(raw))), (candidates,))
        found = [h for (h,) in cur.fetchall()]
    if not found:
        return []
    with link.target.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*), (array_agg(concat_ws(', ', {})))[1:{}] FROM {} WHERE {} = ANY(%s)")
                    .format(_shown(key or ()), sql.Literal(SAMPLE_KEYS), _staging(unit), staged), (found,))
        n, sample = cur.fetchone()
    strategy = unit.masked.rule.columns[column].strategy
    return [Leak(unit.label, column, strategy, int(n), _labelled(key or (), sample), anywhere=True)] if n else []


def _staging(unit: Unit) -> sql.Composable:
    return sql.SQL("{} s").format(delta.only_from(unit.target))


def _shown(keys: tuple[str, ...]) -> sql.Composable:
    if not keys:
        return sql.SQL("'(no key)'")
    return sql.SQL(", ").join(sql.SQL("s.{}::text").format(sql.Identifier(k)) for k in keys)


def _labelled(keys: tuple[str, ...], sample: list[str] | None) -> list[str]:
    return [f"{', '.join(keys)} = {k}" for k in sample or []] if keys else []
