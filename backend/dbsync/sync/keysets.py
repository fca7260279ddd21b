"""Exact key sets: for a key of one integer column, what differs, read off the two summaries.

An exact range (dbsync.sync.ranges, `exact`) holds the keys `64·b … 64·b + 63`, and its summary
on each side is a bitmap, one bit per key present (`h`), and the bits of the keys written since
the last sync (`recent`). Keys are unique, so the XOR that folds a range's bits is their OR, and
the bitmaps are the key sets themselves, not a hash of them. So, range by range:
- keys only prod has, and keys prod wrote since the last sync, are fetched from prod;
- keys staging wrote since the last sync that prod has too are fetched again (prod's version);
- keys only staging has are deleted.
The rows of keys only prod has are fetched apart from the others: the apply inserts them without
first looking for every fetched key in staging's index.
No key is sent by either side and no row is scanned twice: prod's recent rows are fetched by key,
through the key's index, like every other row to fetch.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync.sync.link import Link
from dbsync.sync.ranges import EXACT_SHIFT, Ranges, room_for

_WORD = 2**64 - 1
# The ranges where something differs: the key sets, or a side wrote there since the last sync.
_DIFFERING = sql.SQL(
    "SELECT b, coalesce(p.h, 0), coalesce(s.h, 0), coalesce(p.recent, 0), coalesce(s.recent, 0)"
    " FROM {prod} p FULL JOIN {staging} s USING (b)"
    " WHERE p.h IS DISTINCT FROM s.h OR p.recent IS NOT NULL OR s.recent IS NOT NULL")
# Ranges read from staging at a time (a server-side cursor: a table's worth never sits in memory).
_BATCH = 10_000


@dataclass
class Differences:
    """Keys to fetch from prod, as delta.keys_in takes them (one text per key): those staging
    lacks (`new`) and the others; past a limit only counted. How many to fetch, and how many
    only staging has (written to a temporary table as they are found)."""

    new: list[tuple[str]] = field(default_factory=list)
    others: list[tuple[str]] = field(default_factory=list)
    n_fetch: int = 0
    n_gone: int = 0


def differences(link: Link, ranges: Ranges, names: tuple[sql.Identifier, sql.Identifier], gone: sql.Identifier,
                *, limit: int) -> Differences:
    """The keys that differ, from the summaries in `names` (prod's, staging's) on staging: those
    to fetch, at most `limit` of them (more, and the table is copied in full: only counted);
    those only staging has into the table `gone`. Sets `ranges.differing`."""
    found, pending = Differences(), []
    with link.target.cursor(name="dbsync_key_sets") as cur, link.target.cursor() as writer:
        cur.itersize = _BATCH
        with room_for(ranges.groups, link.target, sort=False):  # a hash join: the summaries come unsorted
            cur.execute(_DIFFERING.format(prod=names[0], staging=names[1]))
        for b, prod, staging, prod_recent, staging_recent in cur:
            if b is None:  # a NULL key on prod (no primary key there): no staging row can match it;
                continue   # the row counts then differ and the run fails, rolled back
            prod, staging, base = prod & _WORD, staging & _WORD, b << EXACT_SHIFT
            new, others = prod & ~staging, ((prod_recent & _WORD) | (staging_recent & prod)) & staging
            found.n_fetch += new.bit_count() + others.bit_count()
            if found.n_fetch <= limit:
                if new:
                    found.new += [(str(k),) for k in _keys(new, base)]
                if others:
                    found.others += [(str(k),) for k in _keys(others, base)]
            gone_here = staging & ~prod
            if gone_here:
                pending += _keys(gone_here, base)
            ranges.differing += 1
            if len(pending) >= _BATCH:
                found.n_gone += _write(writer, gone, pending)
        found.n_gone += _write(writer, gone, pending)
    return found


def _write(cur, table: sql.Identifier, keys: list[int]) -> int:
    """`keys` into `table` (one column), emptying the list; how many."""
    n = len(keys)
    if n:
        cur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(table).as_string(cur.connection),
                        io.StringIO("".join(f"{k}\n" for k in keys)))
        keys.clear()
    return n


def _keys(word: int, base: int) -> list[int]:
    """`base` plus the position of each bit set in `word`, lowest first (a list, not a generator:
    this runs for every differing range, tens of thousands a table)."""
    keys = []
    while word:
        low = word & -word
        keys.append(base + low.bit_length() - 1)
        word ^= low
    return keys
