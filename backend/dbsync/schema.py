"""What the sync needs to know about both catalogs, and how it makes the target's sequences match.

The target's tables already exist (its migrations made them, or the old sync did); the sync
never creates tables. It compares the two catalogs before writing anything and refuses on any
difference that would lose data. After the rows are in, it makes the target's sequences,
`nextval` defaults and identity columns match the source's (create_missing=False semantics:
nothing the source does not have), so the engine can then position every sequence.

Catalog reads run with an empty search_path, so type names and default expressions come out
schema-qualified and compare equal on both sides whatever each session's search_path is.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync import catalog
from dbsync.errors import DbSyncError

SYSTEM_SCHEMA_FILTER = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'"


@dataclass
class Column:
    name: str
    type: str  # format_type(), schema-qualified for user types
    type_oid: int
    not_null: bool
    default: str | None  # pg_get_expr, schema-qualified; None for generated columns
    generated: str  # '' or 's' / 'v'
    identity: str  # '' or 'a' (ALWAYS) / 'd' (BY DEFAULT)


@dataclass
class Table:
    oid: int
    schema: str
    name: str
    relkind: str  # 'r' plain, 'p' partitioned
    is_partition: bool
    owner: str
    label: str  # schema.name quoted as PostgreSQL quotes it (quote_ident)
    columns: dict[str, Column] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.name))


@dataclass
class Sequence:
    oid: int
    schema: str
    name: str
    type: str
    start: int
    increment: int
    min: int
    max: int
    cache: int
    cycle: bool
    owner: str
    label: str  # schema.name quoted as PostgreSQL quotes it: the engine's key
    owned_by: tuple[str, str, str] | None = None  # (schema, table, column) of OWNED BY / identity
    identity: bool = False
    next_value: int | None = None  # source only: what the next nextval() returns

    @property
    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.name))


@dataclass
class Feed:
    """One column fed by one sequence (serial, identity, or a default calling nextval)."""

    table: tuple[str, str]
    column: str
    sequence: tuple[str, str]
    kind: str  # 'identity', 'owned' (serial: OWNED BY + default), 'default' (nextval of a sequence it does not own)


@dataclass
class Catalog:
    tables: dict[tuple[str, str], Table]
    sequences: dict[tuple[str, str], Sequence]
    feeds: list[Feed]
    # (schema, table) of partitions → top-level partitioned table that holds them
    partition_root: dict[tuple[str, str], tuple[str, str]]


def _quote_ident(name: str) -> str:
    """Names in messages: quoted when they are not plain lower-case identifiers."""
    return name if _PLAIN.fullmatch(name) else '"' + name.replace('"', '""') + '"'


_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")


@contextlib.contextmanager
def qualified_names(cur):
    """Run catalog reads with an empty search_path (transaction-local), then put it back."""
    cur.execute("SELECT current_setting('search_path')")
    previous = cur.fetchone()[0]
    cur.execute("SELECT set_config('search_path', '', true)")
    yield
    # Not on error: the transaction is aborted then and will be rolled back anyway.
    cur.execute("SELECT set_config('search_path', %s, true)", (previous,))


_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispartition, pg_get_userbyid(c.relowner),
       quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND """ + SYSTEM_SCHEMA_FILTER

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull,
       CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END, a.attgenerated, a.attidentity
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND a.attnum > 0 AND NOT a.attisdropped
  AND """ + SYSTEM_SCHEMA_FILTER + """
ORDER BY a.attrelid, a.attnum
"""

_PARTITION_ROOTS_SQL = """
WITH RECURSIVE tree(child, root) AS (
    SELECT i.inhrelid, i.inhparent FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relkind = 'p' AND NOT p.relispartition
  UNION ALL
    SELECT i.inhrelid, t.root FROM pg_inherits i JOIN tree t ON i.inhparent = t.child
)
SELECT cn.nspname, c.relname, rn.nspname, r.relname
FROM tree JOIN pg_class c ON c.oid = tree.child JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class r ON r.oid = tree.root JOIN pg_namespace rn ON rn.oid = r.relnamespace
"""

_SEQUENCES_SQL = """
SELECT c.oid, n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
       s.seqmin, s.seqmax, s.seqcache, s.seqcycle, pg_get_userbyid(c.relowner),
       quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence <> 't' AND """ + SYSTEM_SCHEMA_FILTER

# Who feeds which column, from pg_depend (see POSTGRES-NOTES: 'a' serial, 'i' identity,
# 'n' from a pg_attrdef row whose expression calls nextval on the sequence).
_FEEDS_SQL = """
SELECT sn.nspname, s.relname, tn.nspname, t.relname, a.attname, d.deptype, a.attidentity
FROM pg_depend d
JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
UNION ALL
SELECT sn.nspname, s.relname, tn.nspname, t.relname, a.attname, 'n', a.attidentity
FROM pg_attrdef ad
JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                AND d.refclassid = 'pg_class'::regclass
JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_class t ON t.oid = ad.adrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ad.adnum
"""


def read_catalog(conn) -> Catalog:
    """Tables, columns, sequences and sequence feeds of every non-system schema, in a few queries."""
    with conn.cursor() as cur, qualified_names(cur):
        cur.execute(_TABLES_SQL)
        by_oid = {}
        for oid, schema, name, relkind, is_partition, owner, label in cur.fetchall():
            by_oid[oid] = Table(oid, schema, name, relkind, is_partition, owner, label)
        cur.execute(_COLUMNS_SQL)
        for relid, name, typ, typid, notnull, default, generated, identity in cur.fetchall():
            by_oid[relid].columns[name] = Column(name, typ, typid, notnull, default, generated, identity)
        cur.execute(_PARTITION_ROOTS_SQL)
        roots = {(cs, cn): (rs, rn) for cs, cn, rs, rn in cur.fetchall()}
        cur.execute(_SEQUENCES_SQL)
        sequences = {}
        for oid, schema, name, typ, start, inc, mn, mx, cache, cycle, owner, label in cur.fetchall():
            sequences[(schema, name)] = Sequence(oid, schema, name, typ, start, inc, mn, mx, cache, cycle, owner,
                                                 label)
        cur.execute(_FEEDS_SQL)
        feeds: dict[tuple, Feed] = {}
        for sschema, sname, tschema, tname, column, deptype, _identity in cur.fetchall():
            seq = sequences.get((sschema, sname))
            if seq is None:
                continue
            key = ((tschema, tname), column, (sschema, sname))
            if deptype in ("a", "i"):
                seq.owned_by = (tschema, tname, column)
                seq.identity = deptype == "i"
                kind = "identity" if deptype == "i" else "owned"
                feeds[key] = Feed((tschema, tname), column, (sschema, sname), kind)
            elif key not in feeds:
                feeds[key] = Feed((tschema, tname), column, (sschema, sname), "default")
    tables = {t.key: t for t in by_oid.values()}
    return Catalog(tables, sequences, list(feeds.values()), roots)


# -- comparing the two catalogs ---------------------------------------------------------------

_INT_RANK = {"smallint": 1, "integer": 2, "bigint": 3}


def type_compatible(source_type: str, target_type: str) -> bool:
    """Whether every value of source_type loads into target_type unchanged (text COPY)."""
    if source_type == target_type:
        return True
    if source_type in _INT_RANK and target_type in _INT_RANK:
        return _INT_RANK[source_type] <= _INT_RANK[target_type]
    if source_type in _INT_RANK and target_type == "numeric":
        return True
    if target_type == "text" and (source_type.startswith("character varying") or source_type == "text"):
        return True
    if source_type.startswith("character varying(") and target_type == "character varying":
        return True
    if source_type.startswith("character varying(") and target_type.startswith("character varying("):
        return _typmod(source_type) <= _typmod(target_type)
    if source_type.startswith("numeric(") and target_type == "numeric":
        return True
    return False


def _typmod(text: str) -> int:
    return int(text[text.index("(") + 1:text.index(")")])


def copy_columns(source: Table) -> list[str]:
    """The columns that travel: all but generated ones (the target computes those itself)."""
    return [c.name for c in source.columns.values() if not c.generated]


def schema_differences(src: Table, tgt: Table | None) -> list[str]:
    """Every difference between a source table and its target that would lose data or fail the load."""
    if tgt is None:
        return [f"table {src.label} is missing on the target"]
    problems = []
    for col in src.columns.values():
        other = tgt.columns.get(col.name)
        if other is None:
            problems.append(f"column {src.label}.{_quote_ident(col.name)} is missing on the target")
        elif bool(col.generated) != bool(other.generated):
            where = "source" if col.generated else "target"
            problems.append(f"column {src.label}.{_quote_ident(col.name)} is generated on the {where} only")
        elif not col.generated and not type_compatible(col.type, other.type):
            problems.append(f"column {src.label}.{_quote_ident(col.name)} is {col.type} on the source"
                            f" but {other.type} on the target")
    for other in tgt.columns.values():
        if (other.name not in src.columns and other.not_null and other.default is None
                and not other.identity and not other.generated):
            problems.append(f"column {src.label}.{_quote_ident(other.name)} exists only on the target and is"
                            " NOT NULL without a default")
    return problems


def binary_safe(src: Table, tgt: Table, columns: list[str]) -> bool:
    """Binary COPY only where both sides have identical built-in types (user type OIDs differ
    between databases, and binary arrays/records carry them)."""
    for name in columns:
        a, b = src.columns[name], tgt.columns[name]
        if a.type != b.type or a.type_oid != b.type_oid or a.type_oid >= 16384:
            return False
    return True


# -- making the target's sequences match the source's -----------------------------------------

def _seq_options(seq: Sequence, *, with_type: bool = True) -> sql.Composed:
    parts = []
    if with_type:
        parts.append(sql.SQL("AS {}").format(sql.SQL(_builtin_int(seq.type))))
    parts += [
        sql.SQL("INCREMENT BY {}").format(sql.Literal(seq.increment)),
        sql.SQL("MINVALUE {}").format(sql.Literal(seq.min)),
        sql.SQL("MAXVALUE {}").format(sql.Literal(seq.max)),
        sql.SQL("START WITH {}").format(sql.Literal(seq.start)),
        sql.SQL("CACHE {}").format(sql.Literal(seq.cache)),
        sql.SQL("CYCLE" if seq.cycle else "NO CYCLE"),
    ]
    return sql.SQL(" ").join(parts)


def _builtin_int(type_name: str) -> str:
    # A sequence's type is always one of these three; never pass catalog text through unchecked.
    if type_name not in _INT_RANK:
        raise DbSyncError(f"unexpected sequence type {type_name!r}")
    return type_name


def _restart(seq: Sequence) -> sql.Composed:
    """RESTART WITH the source's next value (or its START), clamped into its bounds: an exhausted
    source sequence stands one step past them, and ALTER would refuse that."""
    value = seq.start if seq.next_value is None else min(max(seq.next_value, seq.min), seq.max)
    return sql.SQL("RESTART WITH {}").format(sql.Literal(value))


def _identity_sequence(target: Catalog, feed: Feed) -> Sequence | None:
    for f in target.feeds:
        if f.kind == "identity" and f.table == feed.table and f.column == feed.column:
            return target.sequences.get(f.sequence)
    return None


def _same_definition(a: Sequence, b: Sequence) -> bool:
    return (a.type, a.start, a.increment, a.min, a.max, a.cache, a.cycle) == (
        b.type, b.start, b.increment, b.min, b.max, b.cache, b.cycle)


def align_sequences(conn, source: Catalog, target: Catalog, table_keys: set[tuple[str, str]]) -> list[dict]:
    """Give the target the source's sequences, defaults and identity for the synced tables.

    Runs inside the sync's target transaction (all DDL, rolled back with it). Returns one dict
    per change made: {object, action, detail}.
    """
    changes: list[dict] = []
    feeds = [f for f in source.feeds if f.table in table_keys and f.table in target.tables
             and f.column in target.tables[f.table].columns]
    with conn.cursor() as cur:
        # Identity columns first: an identity brings its own sequence.
        for f in feeds:
            if f.kind != "identity":
                continue
            sseq = source.sequences[f.sequence]
            scol = source.tables[f.table].columns[f.column]
            ttable = target.tables[f.table]
            tcol = ttable.columns[f.column]
            col_ident = sql.Identifier(f.column)
            label = f"{ttable.label}.{_quote_ident(f.column)}"
            mode = sql.SQL("ALWAYS" if scol.identity == "a" else "BY DEFAULT")
            if tcol.identity:
                if tcol.identity != scol.identity:
                    cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET GENERATED {}").format(
                        ttable.ident, col_ident, mode))
                    changes.append({"object": label, "action": "identity_mode_set",
                                    "detail": "ALWAYS" if scol.identity == "a" else "BY DEFAULT"})
                tseq = _identity_sequence(target, f)
                if tseq is not None and not _same_definition(sseq, tseq):
                    # The identity's own sequence (its name may differ from prod's); RESTART keeps
                    # the current position from falling outside the new bounds.
                    cur.execute(sql.SQL("ALTER SEQUENCE {} {} {}").format(
                        tseq.ident, _seq_options(sseq), _restart(sseq)))
                    changes.append({"object": tseq.label, "action": "sequence_altered", "detail": label})
                continue
            if tcol.default is not None:
                cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(ttable.ident, col_ident))
            # A sequence the engine once created for this column (OWNED BY it) would clash with
            # the identity's name; the identity replaces it.
            for tseq in list(target.sequences.values()):
                if tseq.owned_by == (f.table[0], f.table[1], f.column) and not tseq.identity:
                    cur.execute(sql.SQL("DROP SEQUENCE {}").format(tseq.ident))
                    del target.sequences[(tseq.schema, tseq.name)]
            if not tcol.not_null:
                cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(ttable.ident, col_ident))
            if (sseq.schema, sseq.name) in target.sequences:
                raise DbSyncError(f"cannot restore identity on {label}: the target already has a sequence"
                                  f" {sseq.label} that is not owned by this column")
            cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} ADD GENERATED {} AS IDENTITY"
                                " (SEQUENCE NAME {} {})").format(
                ttable.ident, col_ident, mode, sseq.ident, _seq_options(sseq, with_type=False)))
            changes.append({"object": label, "action": "identity_restored", "detail": sseq.label})
        # Plain sequences: create missing ones, align definitions, ownership, defaults.
        created: set[tuple[str, str]] = set()
        altered: set[tuple[str, str]] = set()
        for f in feeds:
            if f.kind == "identity":
                continue
            sseq = source.sequences[f.sequence]
            ttable = target.tables[f.table]
            tcol = ttable.columns[f.column]
            scol = source.tables[f.table].columns[f.column]
            col_ident = sql.Identifier(f.column)
            label = f"{ttable.label}.{_quote_ident(f.column)}"
            if tcol.identity:
                # DROP IDENTITY drops the identity's sequence too; when it has prod's sequence
                # name, that sequence is now missing and is created below.
                cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP IDENTITY").format(ttable.ident, col_ident))
                changes.append({"object": label, "action": "identity_dropped", "detail": None})
                for key, tseq in list(target.sequences.items()):
                    if tseq.identity and tseq.owned_by == (f.table[0], f.table[1], f.column):
                        del target.sequences[key]
                tcol.identity = ""
                tcol.default = None
            tseq = target.sequences.get(f.sequence)
            if tseq is None and f.sequence not in created:
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(sseq.schema)))
                cur.execute(sql.SQL("CREATE SEQUENCE {} {}").format(sseq.ident, _seq_options(sseq)))
                created.add(f.sequence)
                changes.append({"object": sseq.label, "action": "sequence_created", "detail": None})
                _grant_like_inserters(cur, sseq, [target.tables[x.table] for x in feeds if x.sequence == f.sequence])
            elif tseq is not None and not _same_definition(sseq, tseq) and f.sequence not in altered:
                # RESTART: the target's current position may lie outside prod's bounds (a raised
                # MINVALUE, the other direction, a narrower type), which ALTER refuses. The
                # engine (or restart_unpositioned) sets the final position afterwards.
                cur.execute(sql.SQL("ALTER SEQUENCE {} {} {}").format(tseq.ident, _seq_options(sseq), _restart(sseq)))
                altered.add(f.sequence)
                changes.append({"object": sseq.label, "action": "sequence_altered", "detail": None})
            if f.kind == "owned" and (tseq is None or tseq.owned_by != (f.table[0], f.table[1], f.column)):
                if ttable.owner != (tseq.owner if tseq else None):
                    cur.execute(sql.SQL("ALTER SEQUENCE {} OWNER TO {}").format(
                        sseq.ident, sql.Identifier(ttable.owner)))
                cur.execute(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
                    sseq.ident, ttable.ident, col_ident))
                changes.append({"object": sseq.label, "action": "owned_by_set", "detail": label})
            if scol.default is not None and tcol.default != scol.default:
                # The expression is the server's own deparse (pg_get_expr) of prod's default,
                # fully qualified; it names the sequence just made to exist above.
                cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                    ttable.ident, col_ident, sql.SQL(scol.default)))
                changes.append({"object": label, "action": "default_restored" if tcol.default is None
                                else "default_replaced", "detail": scol.default})
                tcol.default = scol.default
    return changes


def _grant_like_inserters(cur, seq: Sequence, tables: list[Table]) -> None:
    """USAGE, SELECT on a created sequence for every target role that may INSERT into its tables
    (prod's roles need not exist on staging; the target's own grants decide)."""
    grantees = catalog.insert_grantees(cur, [t.oid for t in tables])
    for grantee in sorted({g for gs in grantees.values() for g in gs}, key=lambda g: g or ""):
        who = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
        cur.execute(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(seq.ident, who))


def target_feeds(source: Catalog, target_conn, table_keys: set[tuple[str, str]]) -> list[tuple[Feed, Sequence]]:
    """(source feed, target sequence now feeding the same column) for every column of the synced
    tables that a source sequence feeds. Read after align_sequences, so the target sequence is
    the one now feeding that column (its name may differ from the source's)."""
    target = read_catalog(target_conn)
    by_column = {(f.table, f.column): f.sequence for f in target.feeds}
    pairs = []
    for f in source.feeds:
        tkey = by_column.get((f.table, f.column)) if f.table in table_keys else None
        if tkey is not None:
            pairs.append((f, target.sequences[tkey]))
    return pairs


def target_positions(source: Catalog, pairs: list[tuple[Feed, Sequence]]) -> dict[str, int]:
    """The engine's `positions`: target sequence name → the source's next value. The engine is
    limited to the synced tables' sequences (`tables=`), so no other moves."""
    positions: dict[str, int] = {}
    for f, tseq in pairs:
        sseq = source.sequences[f.sequence]
        if sseq.next_value is None:
            continue
        # Several source sequences could feed one target sequence; the highest position clears all.
        prev = positions.get(tseq.label)
        positions[tseq.label] = sseq.next_value if prev is None else _further(prev, sseq.next_value, sseq.increment)
    return positions


_SEQUENCE_DATA_SQL = """
SELECT d.last_value, d.is_called
FROM unnest(%s::oid[]) WITH ORDINALITY AS u(seq, i), LATERAL pg_get_sequence_data(u.seq::regclass) AS d
ORDER BY u.i
"""


def read_next_values(conn, sequences: list[Sequence]) -> dict[str, int]:
    """label → what the next nextval() returns, in one query, in the caller's transaction (the
    source's snapshot). For sequences the engine does not read: those feeding no integer column."""
    if not sequences:
        return {}
    with conn.cursor() as cur:
        if conn.server_version >= 180000:
            # PostgreSQL 18's function (what pg_dump 18 uses); NULLs when the role may not read it.
            cur.execute(_SEQUENCE_DATA_SQL, ([s.oid for s in sequences],))
        else:
            cur.execute(sql.SQL("SELECT last_value, is_called FROM ({}) AS u ORDER BY i").format(
                sql.SQL(" UNION ALL ").join(
                    sql.SQL("SELECT {} AS i, last_value, is_called FROM {}").format(sql.Literal(i), s.ident)
                    for i, s in enumerate(sequences))))
        rows = cur.fetchall()
    unreadable = [s.label for s, (last, _) in zip(sequences, rows, strict=True) if last is None]
    if unreadable:
        raise DbSyncError(f"needs SELECT on sequence(s) {', '.join(unreadable[:5])} to read their positions")
    return {s.label: int(last) + s.increment if called else int(last)
            for s, (last, called) in zip(sequences, rows, strict=True)}


def restart_unpositioned(conn, source: Catalog, pairs: list[tuple[Feed, Sequence]],
                         positioned: set[str]) -> list[dict]:
    """Move the target sequences the engine left alone to the source's position.

    The engine handles integer columns only (a data floor needs max() of an integer); a sequence
    that feeds only other columns (`'X' || nextval('s')`) would otherwise keep the target's old
    position and collide with prod's rows. No floor here: prod's position is the best there is.
    ALTER SEQUENCE … RESTART is transactional, like the engine's moves. One engine-shaped dict
    per column; action `reset`, `unchanged` or `error` (out of bounds, as the engine reports it).
    """
    todo: dict[str, tuple[Sequence, int, list[Feed]]] = {}
    for f, tseq in pairs:
        sseq = source.sequences[f.sequence]
        if tseq.label in positioned or sseq.next_value is None:
            continue
        prev = todo.get(tseq.label)
        value = sseq.next_value if prev is None else _further(prev[1], sseq.next_value, tseq.increment)
        todo[tseq.label] = (tseq, value, (prev[2] if prev else []) + [f])
    if not todo:
        return []
    seqs = [t[0] for t in todo.values()]
    current = read_next_values(conn, seqs)
    out = []
    with conn.cursor() as cur:
        for tseq, value, feeds in todo.values():
            error = None
            before = current[tseq.label]
            if not tseq.min <= before <= tseq.max:
                before = None  # its next nextval() would have failed
            if value > tseq.max or value < tseq.min:
                if tseq.cycle:
                    value = tseq.min if tseq.increment > 0 else tseq.max
                else:
                    bound = (f"exceed MAXVALUE {tseq.max}" if value > tseq.max else f"go below MINVALUE {tseq.min}")
                    error = f"next value {value} would {bound} of {tseq.label}"
            moved = error is None and value != current[tseq.label]
            if moved:
                cur.execute(sql.SQL("ALTER SEQUENCE {} RESTART WITH {}").format(tseq.ident, sql.Literal(value)))
            for f in feeds:
                out.append({"schema": f.table[0], "table": f.table[1], "column": f.column, "sequence": tseq.label,
                            "kind": "serial" if f.kind == "owned" else f.kind, "previous": before,
                            "value": None if error else value,
                            "action": "error" if error else ("reset" if moved else "unchanged"), "error": error,
                            "note": "not an integer column: the source's position, no data floor"})
    return out


def _further(a: int, b: int, increment: int) -> int:
    return max(a, b) if increment > 0 else min(a, b)
