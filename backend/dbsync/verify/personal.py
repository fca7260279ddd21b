"""No raw personal value on staging: every masked column checked against prod's raw values.

Values are compared as 64-bit hashes under a key made at random for the run (never the masking
key, which stays on prod's session): prod hashes each raw value and its masked value, and those
hashes live only in staging's temporary tables, gone at the end of the run. Between servers of one
major version the hash is the internal hashtextextended seeded with the run's key (several times
cheaper); otherwise the first 64 bits of sha256(key ‖ value), which every version computes alike. Row by row, by key:
staging's value must not be prod's raw value, unless the strategy maps that value to itself
(`year` of a January 1st, `redact` of x's). For `email`, whose output is never a real address, no
raw prod value may appear anywhere in the column. A staging write holding a raw value counts too:
whoever wrote it, it is personal data on staging.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync.errors import shown_name
from dbsync.sync import delta
from dbsync.sync.copy import stream_copy
from dbsync.sync.link import Link
from dbsync.sync.units import Unit
from dbsync.verify.compare import SAMPLE_KEYS, source_conditions, where

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


def check_table(link: Link, unit: Unit, key: tuple[str, ...], run: RunKey, slot: int) -> list[Leak]:
    """Prod's (key, raw hash, masked hash) per masked column into a temporary table on staging,
    then staging's values against them."""
    columns = masked_columns(unit)
    if not columns:
        return []
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
        value = sql.Identifier(column)
        items += [run.hash(value), run.hash(unit.masked.expressions[column])]
    copy_out = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT").format(
        sql.SQL(", ").join(items), delta.only_from(unit.source), where(*source_conditions(unit)))
    stream_copy(link.source, link.target, copy_out, sql.SQL("COPY {} FROM STDIN").format(raw),
                stop_at=link.copy_deadline())
    leaks = []
    shown = sql.SQL(", ").join(sql.SQL("s.{}::text").format(sql.Identifier(k)) for k in keys) if keys else \
        sql.SQL("'(no key)'")
    with link.target.cursor() as cur:
        for (column, strategy), (r, m) in zip(columns, names, strict=True):
            staged = run.hash(sql.Identifier("s", column))
            parts = {"shown": shown, "n": sql.Literal(SAMPLE_KEYS), "raw": raw, "r": r, "staged": staged,
                     "t": sql.SQL("{} s").format(delta.only_from(unit.target))}
            if keys:
                cur.execute(_SAME_ROW.format(match=delta.match_keys(keys, "s", "p"), m=m, **parts))
                n, sample = cur.fetchone()
                if n:
                    leaks.append(Leak(unit.label, column, strategy, int(n), _labelled(keys, sample)))
            if strategy == "email":
                cur.execute(_ANYWHERE.format(**parts))
                n, sample = cur.fetchone()
                if n:
                    leaks.append(Leak(unit.label, column, strategy, int(n), _labelled(keys, sample), anywhere=True))
        cur.execute(sql.SQL("DROP TABLE {}").format(raw))
    return leaks


def _labelled(keys: tuple[str, ...], sample: list[str] | None) -> list[str]:
    return [f"{', '.join(keys)} = {k}" for k in sample or []] if keys else []
