"""Applying what the comparison found (dbsync.sync.delta) to staging, in place: changed rows
updated, new ones inserted, parents first; vanished keys deleted, children first — by the strongly
connected components of the foreign keys among the tables applied (`components`): the tables of
one cycle of references in one statement, whose keys the server checks at its end. Nothing is
truncated and no index or constraint is dropped, so readers keep reading.
"""

from __future__ import annotations

from contextlib import contextmanager

from psycopg2 import sql

from dbsync.sync.delta import HASHABLE, match_keys, only_from, temp_table
from dbsync.sync.units import Unit

# The statements of the apply, composed at use (every name an Identifier).
_REWRITE_CHANGED = sql.SQL("UPDATE {t} AS t SET ({cols}) = ROW({values}) FROM {rows} r WHERE {match}")
_ADD_NEW = sql.SQL("INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE SELECT {values} FROM {rows} r"
                      " WHERE NOT EXISTS (SELECT 1 FROM {only_t} t WHERE {match})")
_REMOVE_GONE = sql.SQL("DELETE FROM {t} AS t USING {gone} g WHERE {match}")


def _upsert_statements(unit: Unit, key: tuple[str, ...], i: int) -> tuple[sql.Composable | None, sql.Composable]:
    """(the UPDATE of changed rows or None when only key columns travel, the INSERT of new ones:
    from the rows fetched apart, where the keys staging lacked were known — dbsync.sync.keysets)."""
    rows, key_match = temp_table("rows", i), match_keys(key, "t", "r")
    added = temp_table("added", i) if unit.compared is not None and unit.compared.added is not None else rows
    others = [c for c in unit.columns if c not in key]
    match = key_match
    if others and all(HASHABLE.match(unit.target.columns[c].type) for c in others):
        # Only rows that really differ are written (a row fetched again, unchanged, costs no tuple).
        match = sql.SQL("{} AND ({}) IS DISTINCT FROM ({})").format(
            key_match, sql.SQL(", ").join(sql.Identifier("t", c) for c in others),
            sql.SQL(", ").join(sql.Identifier("r", c) for c in others))
    rewrite = _REWRITE_CHANGED.format(
        t=unit.target.ident, cols=sql.SQL(", ").join(sql.Identifier(c) for c in others),
        values=sql.SQL(", ").join(sql.Identifier("r", c) for c in others), rows=rows, match=match) if others else None
    add = _ADD_NEW.format(
        t=unit.target.ident, cols=sql.SQL(", ").join(sql.Identifier(c) for c in unit.columns),
        values=sql.SQL(", ").join(sql.Identifier("r", c) for c in unit.columns), rows=added,
        only_t=only_from(unit.target), match=key_match)
    return rewrite, add


def upsert(conn, unit: Unit, key: tuple[str, ...], i: int) -> int:
    """Changed rows updated in place, then new ones inserted: the table's own rows, never re-keyed.
    Returns the rows inserted."""
    update, insert = _upsert_statements(unit, key, i)
    with conn.cursor() as cur:
        if update is not None:
            cur.execute(update)
        cur.execute(insert)
        return cur.rowcount


def _together(parts: list[tuple[str, sql.Composable]], result: sql.Composable) -> sql.Composed:
    """`WITH name AS (statement), … SELECT result`: statements run as one, so a foreign key that is
    not deferred is checked once, at the end of it, against all of their rows."""
    return sql.SQL("WITH {} SELECT {}").format(
        sql.SQL(", ").join(sql.SQL("{} AS ({})").format(sql.Identifier(name), st) for name, st in parts), result)


def upsert_together(conn, members: list[tuple[Unit, tuple[str, ...], int]]) -> list[int]:
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
    with conn.cursor() as cur:
        cur.execute(_together(parts, sql.SQL(", ").join(counts)))
        return [int(c) for c in cur.fetchone()]


# Joins of a delta (at most AUTO_FULL_FRACTION of a table) with its table: by key, through the
# index. Left to itself the planner often reads the whole table in key order for a merge join.
_PROBE_SETTINGS = ("enable_mergejoin", "enable_hashjoin")


@contextmanager
def probing(conn):
    """Nested loops over the key's index for the statements inside, then the settings as they
    were (SET LOCAL would last to the COMMIT, through the foreign keys' validation)."""
    def select(template: sql.SQL, *args) -> sql.Composable:
        return sql.SQL("SELECT {}").format(sql.SQL(", ").join(
            template.format(sql.Literal(name), *map(sql.Literal, values))
            for name, *values in zip(_PROBE_SETTINGS, *args, strict=True)))

    with conn.cursor() as cur:
        cur.execute(select(sql.SQL("current_setting({})")))
        before = cur.fetchone()
        cur.execute(select(sql.SQL("set_config({}, 'off', true)")))
    yield
    with conn.cursor() as cur:  # not reached after an error: the rollback undoes set_config
        cur.execute(select(sql.SQL("set_config({}, {}, true)"), before))


def _remove_gone(unit: Unit, key: tuple[str, ...], i: int) -> sql.Composed:
    return _REMOVE_GONE.format(t=only_from(unit.target), gone=temp_table("gone", i), match=match_keys(key, "t", "g"))


def delete_gone(conn, unit: Unit, key: tuple[str, ...], i: int) -> int:
    """The vanished keys' rows deleted; how many this statement removed."""
    with conn.cursor() as cur:
        cur.execute(_remove_gone(unit, key, i))
        return cur.rowcount


def delete_together(conn, members: list[tuple[Unit, tuple[str, ...], int]]) -> None:
    """The deletes of the tables of one foreign-key cycle in one statement (see upsert_together)."""
    with conn.cursor() as cur:
        cur.execute(_together([(f"gone_{n}", _remove_gone(unit, key, i)) for n, (unit, key, i) in enumerate(members)],
                              sql.SQL("1")))


def still_there(conn, unit: Unit, key: tuple[str, ...], i: int) -> int:
    """How many of the keys prod lacks staging still has: 0 after a complete apply. A DELETE's own
    row count would miss rows an ON DELETE CASCADE from another table removed first."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} g WHERE EXISTS (SELECT 1 FROM {} t WHERE {})").format(
            temp_table("gone", i), only_from(unit.target), match_keys(key, "t", "g")))
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
