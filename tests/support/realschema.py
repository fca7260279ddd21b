"""Real applications' schemas for the tests: load a Rails `db/structure.sql` into a fresh database,
fill every table with rows that satisfy every constraint, and change a few of them per night.

The schema files are not part of this repository (their licences are their applications'): they
live in DBSYNC_SCHEMA_DIR (default ../shared/schemas beside the project), one folder per
application holding its structure.sql (and a SOURCE.txt: repository, commit, licence).

Nothing here knows an application: values come from the catalog (types, NOT NULL, CHECK
constraints, unique indexes, enums, partition bounds, foreign keys), and whatever the server still
refuses is retried with other values, row by row, and reported when it cannot be satisfied.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from localdev.pgserver import LocalServer, admin_execute, tool
from tests.support.paths import ROOT

SCHEMA_DIR_VAR = "DBSYNC_SCHEMA_DIR"
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "dbsync")
ATTEMPTS = 12  # per row: each failure names the constraint, and only its columns change
PARENT_SAMPLE = 200  # parent keys a child's rows choose from
# GitLab's full sync takes about 11,400 locks in one transaction: more than the default lock
# table holds (64 x 100 connections), so the real-schema tests run on a server sized for it.
ROOMY = {"max_locks_per_transaction": "256"}


def schema_dir() -> Path:
    return Path(os.environ.get(SCHEMA_DIR_VAR) or ROOT.parent / "shared" / "schemas")


def available_schemas() -> list[Path]:
    """Each application's structure.sql under schema_dir(), by folder name."""
    base = schema_dir()
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob("*/structure.sql") if p.is_file())


def roomy_server() -> LocalServer:
    """A server of its own whose lock table holds a big schema's sync (use it as a context manager)."""
    return LocalServer(settings=ROOMY)


def create_database(server: LocalServer, name: str) -> str:
    admin_execute(server.dsn("postgres"), sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return server.dsn(name)


# -- loading ------------------------------------------------------------------------------------

@dataclass
class LoadReport:
    seconds: float
    skipped_extensions: list[str]
    errors: list[str]  # statements the server refused ("line N: ERROR: …"), mostly what needs a skipped extension


_EXTENSION = re.compile(r"^CREATE EXTENSION IF NOT EXISTS\s+\"?([\w-]+)\"?[^;]*;", re.M | re.I)
_EXTENSION_COMMENT = re.compile(r"^COMMENT ON EXTENSION\s+\"?([\w-]+)\"?\s+IS\s+'(?:[^']|'')*';", re.M | re.I)


def _available_extensions(dsn: str) -> set[str]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name FROM pg_available_extensions")
            return {name for (name,) in cur.fetchall()}
    finally:
        conn.close()


def strip_missing_extensions(text: str, available: set[str]) -> tuple[str, list[str]]:
    """The schema without CREATE/COMMENT ON EXTENSION of extensions this server lacks."""
    skipped = sorted({m.group(1) for m in _EXTENSION.finditer(text)} - available)

    def drop(m: re.Match) -> str:
        return f"-- skipped: extension {m.group(1)} is not available" if m.group(1) in skipped else m.group(0)

    return _EXTENSION_COMMENT.sub(drop, _EXTENSION.sub(drop, text)), skipped


def load_schema(dsn: str, path: Path | str) -> LoadReport:
    """Run the structure.sql with the wheel's psql, going on past errors; what the server
    refused (objects needing a missing extension, and whatever depends on them) is reported."""
    start = time.monotonic()
    text, skipped = strip_missing_extensions(Path(path).read_text(), _available_extensions(dsn))
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(text)
    try:
        quiet = {**os.environ, "PGOPTIONS": "-c client_min_messages=error"}
        done = subprocess.run([tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", dsn, "-f", f.name],
                              capture_output=True, text=True, env=quiet)
    finally:
        os.unlink(f.name)
    errors = [line.split(":", 2)[-1].strip() for line in done.stderr.splitlines() if "ERROR:" in line]
    return LoadReport(time.monotonic() - start, skipped, errors)


# -- the catalog --------------------------------------------------------------------------------

@dataclass
class Column:
    name: str
    num: int
    type: str  # the base type's name (a domain's base)
    category: str
    typtype: str
    typmod: int
    notnull: bool
    has_default: bool
    identity: str
    generated: str
    labels: list[str] = field(default_factory=list)  # an enum's
    element: str | None = None  # an array's element type


@dataclass
class ForeignKey:
    name: str
    child: int
    parent: int
    cols: list[str]
    refcols: list[str]
    deferred: bool = False  # filled NULL first, set in a second pass (a cycle)


@dataclass
class Table:
    oid: int
    schema: str
    name: str
    columns: dict[str, Column]
    pk: list[str] = field(default_factory=list)
    unique: dict[str, list[str]] = field(default_factory=dict)  # index name -> columns ([] for expressions)
    checks: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # name -> columns, literals
    fks: list[ForeignKey] = field(default_factory=list)
    leaves: list[dict[str, str | None]] = field(default_factory=list)  # partition key values per leaf

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    def unique_cols(self) -> set[str]:
        return {c for cols in self.unique.values() for c in cols}

    def fk_cols(self) -> set[str]:
        return {c for fk in self.fks for c in fk.cols}


_TABLES = sql.SQL("""
SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype = 'e')""")
_COLUMNS = sql.SQL("""
SELECT a.attrelid, a.attname, a.attnum, b.typname, b.typcategory, b.typtype,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       a.attnotnull OR (t.typtype = 'd' AND t.typnotnull), a.atthasdef OR t.typdefault IS NOT NULL,
       a.attidentity, a.attgenerated, b.oid, e.typname
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
  LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
 WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum""")
_ENUMS = sql.SQL("SELECT enumtypid, array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum GROUP BY 1")
_CONSTRAINTS = sql.SQL("""
SELECT conrelid, conname, contype, conkey, confrelid, confkey, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE conrelid = ANY(%s) AND contype IN ('c', 'f') AND conparentid = 0""")
_UNIQUE = sql.SQL("""
SELECT i.indrelid, c.relname, i.indkey::int2[], pg_get_expr(i.indpred, i.indrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = ANY(%s) AND (i.indisunique OR i.indisexclusion)""")
_PK = sql.SQL("SELECT conrelid, conkey FROM pg_constraint WHERE conrelid = ANY(%s) AND contype = 'p'")
_PARTITIONS = sql.SQL("""
SELECT i.inhparent, c.oid, c.relkind, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c
  JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.relispartition ORDER BY c.oid""")
_PARTKEYS = sql.SQL("SELECT partrelid, partattrs::int2[] FROM pg_partitioned_table")


def read_catalog(conn) -> dict[int, Table]:
    """Every application table (partitions are filled through their root), with what constrains it."""
    with conn.cursor() as cur:
        cur.execute(_TABLES, (list(SYSTEM_SCHEMAS),))
        tables = {oid: Table(oid, schema, name, {}) for oid, schema, name in cur.fetchall()}
        cur.execute(_ENUMS)
        enums = dict(cur.fetchall())
        oids = list(tables)
        cur.execute(_COLUMNS, (oids,))
        for rel, name, num, typ, cat, typtype, typmod, notnull, hasdef, ident, gen, base, elem in cur.fetchall():
            tables[rel].columns[name] = Column(name, num, typ, cat, typtype, typmod, notnull, hasdef, ident, gen,
                                               enums.get(base, []), elem)
        _read_keys(cur, tables, oids)
        _read_partitions(cur, tables)
    conn.rollback()
    return tables


def _names(table: Table, nums) -> list[str]:
    by_num = {c.num: c.name for c in table.columns.values()}
    return [by_num[n] for n in nums if n in by_num]


_LITERAL = re.compile(r"'((?:[^']|'')*)'|(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w.])")


def _read_keys(cur, tables: dict[int, Table], oids: list[int]) -> None:
    cur.execute(_PK, (oids,))
    for rel, keys in cur.fetchall():
        tables[rel].pk = _names(tables[rel], keys)
    cur.execute(_UNIQUE, (oids,))
    for rel, index, keys, predicate in cur.fetchall():
        # a partial index's rows are also freed by changing what its WHERE reads
        named = [c for c in tables[rel].columns if predicate and re.search(rf"\b{re.escape(c)}\b", predicate)]
        tables[rel].unique[index] = [] if 0 in keys else _names(tables[rel], keys) + named
    cur.execute(_CONSTRAINTS, (oids,))
    for rel, name, kind, keys, parent, refkeys, definition in cur.fetchall():
        table = tables[rel]
        if kind == "c":
            literals = [m.group(2) if m.group(1) is None else m.group(1).replace("''", "'")
                        for m in _LITERAL.finditer(definition)]
            table.checks[name] = (_names(table, keys or []), literals)
        elif parent in tables:
            table.fks.append(ForeignKey(name, rel, parent, _names(table, keys), _names(tables[parent], refkeys)))


def _read_partitions(cur, tables: dict[int, Table]) -> None:
    cur.execute(_PARTKEYS)
    keys = {rel: list(attrs) for rel, attrs in cur.fetchall()}
    cur.execute(_PARTITIONS)
    children: dict[int, list[tuple[int, str, str]]] = {}
    for parent, child, kind, bound in cur.fetchall():
        children.setdefault(parent, []).append((child, kind, bound))
    for table in tables.values():
        if table.oid in keys:
            table.leaves = list(_leaves(table, table.oid, {}, keys, children))


def _leaves(table: Table, rel: int, fixed: dict, keys: dict, children: dict):
    """The partition key values each leaf partition takes (None: any value, e.g. hash or default)."""
    cols = _names(table, keys.get(rel, []))
    for child, kind, bound in children.get(rel, []):
        values = dict(fixed)
        values.update(_bound_values(cols, bound) if len(cols) == len(keys.get(rel, [])) else {})
        if kind == "p":
            yield from _leaves(table, child, values, keys, children)
        else:
            yield values


_BOUND = re.compile(r"FOR VALUES (?:IN \((?P<list>.*)\)|FROM \((?P<lo>.*?)\) TO \((?P<hi>.*)\))$", re.S)
_CONST = re.compile(r"\s*('(?:[^']|'')*'|[^,]+)\s*(?:,|$)")


def _constants(text: str) -> list[str | None]:
    out: list[str | None] = []
    for token in _CONST.findall(text):
        token = token.strip()
        out.append(token[1:-1].replace("''", "'") if token.startswith("'") else None if token == "NULL" else token)
    return out


def _bound_values(cols: list[str], bound: str) -> dict[str, str | None]:
    m = _BOUND.match(bound.strip())
    if not m:
        return {}  # hash or DEFAULT: any value lands somewhere
    if m.group("list") is not None:
        return {cols[0]: _constants(m.group("list"))[0]}
    lows, highs = _constants(m.group("lo")), _constants(m.group("hi"))
    out: dict[str, str | None] = {}
    for col, low, high in zip(cols, lows, highs, strict=False):
        if low == "MINVALUE":
            if high not in ("MINVALUE", "MAXVALUE"):
                out[col] = "below:" + high  # resolved by the server: lower than the upper bound
            break
        out[col] = low  # the lower bound is inclusive
    return out


# -- values -------------------------------------------------------------------------------------

_INT_MAX = {"int2": 32767, "int4": 2**31 - 1, "int8": 2**53, "oid": 2**31 - 1}
_GEOMETRIC = {"point": "(1,2)", "line": "{1,-1,0}", "lseg": "[(0,0),(1,1)]", "box": "(1,1),(0,0)",
              "path": "((0,0),(1,1))", "polygon": "((0,0),(1,1),(1,0))", "circle": "<(0,0),1>"}
_FIXED = {"json": "{}", "jsonb": "{}", "xml": "<a/>", "tsquery": "word", "money": "1.00", "ltree": "a.b",
          "hstore": '"a"=>"b"', "txid_snapshot": "1:1:", "pg_lsn": "0/0", "regclass": "pg_class",
          "regtype": "int4", "regproc": "now", "char": "a", **_GEOMETRIC}
_ALTERNATES = {"json": ["{}", "[]", '{"a": 1}', '"s"', "1"], "jsonb": ["{}", "[]", '{"a": 1}', '"s"', "1"]}
_EPOCH = 1_704_067_200  # 2024-01-01 UTC: dates spread over the two years after it


class Values:
    """Text values the server casts to each column's type; unique by construction where a row
    index and a random part can make them so."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.counter = rng.randrange(1, 10**6) * 1000

    def fresh(self, col: Column) -> str | None:
        self.counter += 1
        return self._typed(col.type, col, self.counter)

    def _typed(self, typ: str, col: Column, n: int) -> str | None:  # noqa: C901 - one case per kind of type
        rng = self.rng
        if col.labels:
            return rng.choice(col.labels)
        if col.category == "A":
            return "{}"
        if col.typtype in ("r", "m"):
            return "empty" if col.typtype == "r" else "{}"
        if typ in _INT_MAX:
            return str(rng.randrange(1, _INT_MAX[typ]))
        if typ in ("numeric", "float4", "float8"):
            return self._number(col)
        if col.category == "S" or typ in ("citext", "name"):
            return self._text(col, n)
        if typ == "bool":
            return rng.choice(("t", "f"))
        if col.category == "D" or typ == "interval":
            return self._time(typ)
        if typ == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if typ == "bytea":
            return "\\x" + rng.getrandbits(64).to_bytes(8, "big").hex()
        if col.category == "I":
            a, b = rng.randrange(256), rng.randrange(256)
            return f"10.{a}.{b}.0/24" if typ == "cidr" else f"10.{a}.{b}.{rng.randrange(1, 255)}"
        if typ in ("macaddr", "macaddr8"):
            return ":".join(f"{rng.randrange(256):02x}" for _ in range(6 if typ == "macaddr" else 8))
        if typ in ("bit", "varbit"):
            return "1" * max(col.typmod, 1) if typ == "bit" else "1"
        if typ == "tsvector":
            return f"'w{n}'"
        if typ == "vector":
            return "[" + ",".join("0" for _ in range(max(col.typmod, 1))) + "]"
        return _FIXED.get(typ, "x")

    def _number(self, col: Column) -> str:
        if col.type == "numeric" and col.typmod > 4:
            precision, scale = (col.typmod - 4) >> 16, (col.typmod - 4) & 0xFFFF
            top = 10 ** min(precision - scale, 6) - 1
            return f"{self.rng.randint(0, max(top, 0))}.{self.rng.randrange(10 ** scale) if scale else 0}"
        return f"{self.rng.randrange(1, 10**6) / 100:.2f}"

    def _text(self, col: Column, n: int) -> str:
        limit = col.typmod - 4 if col.typmod > 4 else 60
        value = f"{col.name[:12]}-{n}-{self.rng.getrandbits(24):06x}"
        if len(value) > limit:
            value = f"{n}{self.rng.getrandbits(20):05x}"[-limit:]
        return value

    def _time(self, typ: str) -> str:
        rng = self.rng
        seconds = _EPOCH + rng.randrange(2 * 365 * 86400)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
        return {"date": stamp[:10], "time": stamp[11:], "timetz": stamp[11:] + "+00",
                "interval": f"{rng.randrange(1, 1000)} minutes", "timestamptz": stamp + "+00"}.get(typ, stamp)

    def candidates(self, col: Column, literals: list[str]) -> list[str | None]:
        """What to try for a column a CHECK refused: the check's own literals (and one either
        side of a number, and strings of a length it names), the type's usual shapes, NULL."""
        out: list[str | None] = []
        for lit in literals:
            if col.category not in "SNE" or col.category == "N" and not re.fullmatch(r"-?\d+(\.\d+)?", lit):
                continue  # a literal of another column in the same check
            out.append(lit)
            if re.fullmatch(r"-?\d+", lit):
                out += [str(int(lit) + 1), str(int(lit) - 1)]
                if col.category == "S" and 0 < int(lit) <= 2000:
                    out += ["a" * int(lit), "a" * (int(lit) - 1)]
        out += _ALTERNATES.get(col.type, [])
        if col.category == "A" and col.element:
            out.append("{" + '"1"' + "}")
        if col.category in ("N", "S"):
            out += ["0", "1"] + ([""] if col.category == "S" else [])
        if not col.notnull:
            out.append(None)
        return out


# -- the order: parents first, cycles broken through nullable foreign keys ----------------------

def _components(nodes: list[int], edges: dict[int, set[int]]) -> list[list[int]]:
    """Strongly connected components (Tarjan, iterative), each after every component it reaches:
    with edges child -> parent, parents come first."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    out: list[list[int]] = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                    break
                if nxt in stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    cut = stack.index(node)
                    out.append(stack[cut:])
                    del stack[cut:]
    return out


def _nullable(table: Table, fk: ForeignKey) -> bool:
    return any(not table.columns[c].notnull for c in fk.cols)


def fill_order(tables: dict[int, Table]) -> list[int]:
    """Parents before children. A foreign key inside a cycle (a self-reference included) with a
    nullable column is marked deferred: NULL at insert, set once its parent has rows."""
    edges: dict[int, set[int]] = {oid: set() for oid in tables}
    for table in tables.values():
        for fk in table.fks:
            edges[table.oid].add(fk.parent)
    order: list[int] = []
    for comp in _components(sorted(tables), edges):
        members = set(comp)
        for oid in comp:
            for fk in tables[oid].fks:
                fk.deferred = fk.parent in members and _nullable(tables[oid], fk)
        order += _order_inside(comp, tables)
    return order


def _order_inside(comp: list[int], tables: dict[int, Table]) -> list[int]:
    """A component's tables by what they still wait for; a NOT NULL cycle is left as it comes
    (its tables fail, and are reported)."""
    waiting = {oid: {fk.parent for fk in tables[oid].fks if not fk.deferred and fk.parent in comp and fk.parent != oid}
               for oid in comp}
    out: list[int] = []
    while waiting:
        ready = sorted(oid for oid, deps in waiting.items() if not deps) or sorted(waiting)[:1]
        for oid in ready:
            out.append(oid)
            del waiting[oid]
        for deps in waiting.values():
            deps.difference_update(ready)
    return out


# -- filling ------------------------------------------------------------------------------------

DEFAULT = object()  # the column's DEFAULT


@dataclass
class TableFill:
    wanted: int
    inserted: int = 0
    error: str | None = None  # the last refusal, when fewer rows than wanted went in


@dataclass
class FillReport:
    seconds: float
    tables: dict[str, TableFill]
    second_pass: int  # cycle foreign keys set once their parents had rows

    @property
    def rows(self) -> int:
        return sum(t.inserted for t in self.tables.values())

    def shortfalls(self) -> dict[str, str]:
        return {name: f"{t.inserted}/{t.wanted}: {t.error}" for name, t in self.tables.items()
                if t.inserted < t.wanted}


class Refused(Exception):
    """A row the server refused: the error, for the next attempt to change what it names."""

    def __init__(self, error: psycopg2.Error):
        super().__init__(str(error).strip().splitlines()[0])
        self.code = error.pgcode
        self.constraint = error.diag.constraint_name
        self.column = error.diag.column_name
        self.table = error.diag.table_name
        self.detail = error.diag.message_detail or ""


class Rows:
    """Rows for one table: generated, inserted under a savepoint, and on a refusal changed where
    the refusal points, learning which choices the table's CHECK constraints accept."""

    def __init__(self, conn, tables: dict[int, Table], table: Table, values: Values):
        self.conn, self.tables, self.table, self.values, self.rng = conn, tables, table, values, values.rng
        self.columns = [c for c in table.columns.values() if not c.generated]
        self.sticky: dict[str, str | None] = {}  # a value a CHECK accepted, for the next rows
        self.forced: set[str] = set()  # columns whose DEFAULT was refused
        self.parents: dict[str, list[tuple]] = {fk.name: self._parent_keys(fk) for fk in table.fks}
        self.leaves = [self._resolve(leaf) for leaf in table.leaves] or [{}]
        self.keep = table.fk_cols() | {c for leaf in self.leaves for c in leaf}

    # generation
    def row(self) -> dict[str, object]:
        row = {c.name: self._value(c) for c in self.columns}
        row.update({k: v for k, v in self.rng.choice(self.leaves).items()})
        self._pick_parents(row, self.table.fks)
        return row

    def _value(self, col: Column) -> object:
        if col.identity or (col.has_default and col.name not in self.keep and col.name not in self.forced):
            return DEFAULT
        if col.name in self.sticky:
            kept = self.sticky[col.name]
            return kept if kept is None or col.name not in self.table.unique_cols() else self.values.fresh(col)
        if not col.notnull and self.rng.random() < 0.2:
            return None
        return self.values.fresh(col)

    def _pick_parents(self, row: dict, fks: list[ForeignKey], fixed: set[str] | None = None) -> None:
        fixed = set(fixed or ())
        for fk in sorted(fks, key=lambda f: -len(f.cols)):
            nullable = [c for c in fk.cols if not self.table.columns[c].notnull and c not in fixed]
            if fk.deferred or (nullable and len(nullable) == len(fk.cols) and self.rng.random() < 0.15):
                row.update(dict.fromkeys(nullable, None))
                continue
            fits = [t for t in self.parents[fk.name]
                    if all(row.get(c) == v for c, v in zip(fk.cols, t, strict=True) if c in fixed)]
            if fits or not nullable:
                row.update(zip(fk.cols, self.rng.choice(fits or self.parents[fk.name] or [(None,) * len(fk.cols)]),
                               strict=True))
            else:
                row[nullable[0]] = None  # MATCH SIMPLE: one NULL column and the key holds
            fixed.update(fk.cols)

    def _parent_keys(self, fk: ForeignKey) -> list[tuple]:
        parent_cols = [sql.SQL("{}::text").format(sql.Identifier(c)) for c in fk.refcols]
        not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.refcols)
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT DISTINCT {} FROM {} WHERE {} ORDER BY 1 LIMIT {}").format(
                sql.SQL(", ").join(parent_cols), self.tables[fk.parent].ident, not_null,
                sql.Literal(PARENT_SAMPLE)))
            return cur.fetchall()

    def _resolve(self, leaf: dict[str, str | None]) -> dict[str, str | None]:
        """A partition bound 'below X' (a range from MINVALUE) as a value of the column's type."""
        out = dict(leaf)
        for col, value in leaf.items():
            if isinstance(value, str) and value.startswith("below:"):
                step = sql.SQL("interval '1 day'") if self.table.columns[col].category == "D" else sql.SQL("1")
                with self.conn.cursor() as cur:
                    cur.execute(sql.SQL("SELECT ((%s::{}) - {})::text").format(
                        sql.Identifier(self.table.columns[col].type), step), (value[6:],))
                    out[col] = cur.fetchone()[0]
        return out

    # inserting
    def insert(self, rows: list[dict]) -> None:
        names = [c.name for c in self.columns]
        if names:
            values = sql.SQL(", ").join(sql.SQL("({})").format(sql.SQL(", ").join(
                sql.SQL("DEFAULT") if r[n] is DEFAULT else sql.Literal(r[n]) for n in names)) for r in rows)
            statement = sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
                self.table.ident, sql.SQL(", ").join(map(sql.Identifier, names)), values)
        else:
            statement = sql.SQL("INSERT INTO {} DEFAULT VALUES").format(self.table.ident)
        guarded(self.conn, statement)

    def insert_one(self) -> str | None:
        """One row, changed where each refusal points; None when it went in, else the last refusal."""
        row, changed, error = self.row(), set(), None
        for _ in range(ATTEMPTS):
            try:
                self.insert([row])
            except Refused as refusal:
                error = refusal
                changed |= self._change(row, refusal)
                continue
            self.sticky.update({c: row[c] for c in changed if c not in self.keep and row[c] is not DEFAULT})
            return None
        return str(error)

    def fill(self, n: int) -> TableFill:
        result = TableFill(n)
        empty = [fk for fk in self.table.fks
                 if not fk.deferred and not self.parents[fk.name] and not _nullable(self.table, fk)]
        if empty:
            result.error = f"parent {self.tables[empty[0].parent].label} has no rows ({empty[0].name})"
            return result
        tried_batch, failures = False, 0
        while result.inserted < n and failures < 2:
            if result.inserted and not tried_batch:  # the first row taught what the table takes
                tried_batch = True
                try:
                    self.insert(batch := [self.row() for _ in range(n - result.inserted)])
                    result.inserted += len(batch)
                    break
                except Refused:
                    pass  # row by row, each changed where its refusal points
            error = self.insert_one()
            result.inserted += error is None
            failures += error is not None
            result.error = error or result.error
        return result

    # what a refusal changes
    def _change(self, row: dict, refusal: Refused) -> set[str]:
        code, name = refusal.code, refusal.constraint
        if code == "23502" and refusal.column in row:
            self.forced.add(refusal.column)
            self._renew(row, [refusal.column])
            return set()
        if code == "23514" and name in self.table.checks:
            return self._satisfy(row, *self.table.checks[name])
        if code == "23514":  # no partition for the row (or a domain's check): another leaf, new values
            row.update(self.row())
            return set()
        if code in ("23505", "23P01"):
            cols = self.table.unique.get(name) or [c.name for c in self.columns if c.category in "SN"]
            self.forced.update(cols)
            self._renew(row, cols)
            return set()
        if code == "23503":
            self._renew(row, next((fk.cols for fk in self.table.fks if fk.name == name), []))
            return set()
        row.update(self.row())
        return set()

    def _renew(self, row: dict, cols: list[str]) -> None:
        fks = [fk for fk in self.table.fks if set(fk.cols) & set(cols)]
        for col in cols:
            if col not in self.table.fk_cols() and not self.table.columns[col].identity:
                row[col] = self.values.fresh(self.table.columns[col])
        self._pick_parents(row, fks, fixed=self.keep - self.table.fk_cols())

    def _satisfy(self, row: dict, cols: list[str], literals: list[str]) -> set[str]:
        """Another try at a CHECK: each of its columns NULL (half the time, where it may be) or one
        of the values the check or the type suggests."""
        for name in cols:
            col = self.table.columns[name]
            self.forced.add(name)
            if not col.notnull and self.rng.random() < 0.5:
                row[name] = None
            elif name in self.table.fk_cols():
                self._pick_parents(row, [fk for fk in self.table.fks if name in fk.cols and not fk.deferred])
            else:
                row[name] = self.rng.choice([v for v in self.values.candidates(col, literals) if v is not None]
                                            + [self.values.fresh(col)])
        return set(cols)


def guarded(conn, statement: sql.Composable, args=None) -> int:
    """Run one statement under a savepoint: a refusal rolls back only it (raised as Refused)."""
    with conn.cursor() as cur:
        # a deferrable key would refuse only at COMMIT, past every savepoint
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE; SAVEPOINT realschema")
        try:
            cur.execute(statement, args)
            count = cur.rowcount
        except psycopg2.Error as error:
            cur.execute("ROLLBACK TO SAVEPOINT realschema")
            raise Refused(error) from error
        finally:
            cur.execute("RELEASE SAVEPOINT realschema")
        return count


def fill(dsn: str, rows_per_table: int = 10, seed: int = 0) -> FillReport:
    """Every table (partitions through their roots) gets `rows_per_table` rows satisfying every
    constraint, parents first; each table is committed on its own (a big schema's locks would not
    fit one transaction). What could not be filled is in the report's shortfalls()."""
    start = time.monotonic()
    conn = psycopg2.connect(dsn)
    try:
        tables = read_catalog(conn)
        values = Values(random.Random(seed))
        _seed_server(conn, values.rng)
        report = FillReport(0.0, {}, 0)
        for oid in fill_order(tables):
            report.tables[tables[oid].label] = Rows(conn, tables, tables[oid], values).fill(rows_per_table)
            conn.commit()
        report.second_pass = set_deferred(conn, tables, values.rng)
        report.seconds = time.monotonic() - start
        return report
    finally:
        conn.close()


def set_deferred(conn, tables: dict[int, Table], rng: random.Random) -> int:
    """The second pass: most rows' cycle foreign keys, NULL at insert, now point at a parent."""
    done = 0
    for table in tables.values():
        for fk in (f for f in table.fks if f.deferred):
            parents = Rows(conn, tables, table, Values(rng)).parents[fk.name]
            for tableoid, ctid in _rows_of(conn, table) if parents else []:
                if rng.random() < 0.7:
                    assign = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in fk.cols)
                    try:
                        done += guarded(conn, sql.SQL("UPDATE {} SET {} WHERE tableoid = %s AND ctid = %s::tid").format(
                            table.ident, assign), (*rng.choice(parents), tableoid, ctid))
                    except Refused:
                        pass
            conn.commit()
    return done


def _seed_server(conn, rng: random.Random) -> None:
    """The session's random() seeded, so that ORDER BY random() picks the same rows each run."""
    with conn.cursor() as cur:
        cur.execute("SELECT setseed(%s)", (rng.uniform(-1, 1),))


def _rows_of(conn, table: Table, limit: int | None = None) -> list[tuple[int, str]]:
    """(tableoid, ctid) of the table's rows: a row's address on any table, with or without a key."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT tableoid::oid, ctid::text FROM {} ORDER BY random() LIMIT {}").format(
            table.ident, sql.Literal(limit) if limit is not None else sql.SQL("ALL")))
        return cur.fetchall()


# -- a night's changes --------------------------------------------------------------------------

@dataclass
class NightReport:
    seconds: float = 0.0
    updated: int = 0
    inserted: int = 0
    deleted: int = 0  # rows the tool deleted (children first where a key would refuse); cascades not counted
    tables: int = 0  # tables changed
    refused: dict[str, str] = field(default_factory=dict)  # table -> the last change the server refused


def change_night(dsn: str, fraction: float = 0.01, seed: int = 0) -> NightReport:
    """About `fraction` of each table's rows changed, every foreign key holding: updates of
    columns no key or unique index reads, inserts (parents sampled as they are now), deletes
    (the schema's cascades and SET NULLs act; a child that would refuse is deleted first)."""
    start, report = time.monotonic(), NightReport()
    conn = psycopg2.connect(dsn)
    try:
        tables = read_catalog(conn)
        values = Values(random.Random(seed))
        _seed_server(conn, values.rng)
        for oid in fill_order(tables):
            _change_table(conn, tables, tables[oid], values, fraction, report)
            conn.commit()
    finally:
        conn.close()
    report.seconds = time.monotonic() - start
    return report


def _how_many(conn, table: Table, fraction: float, rng: random.Random) -> int:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table.ident))
        expected = cur.fetchone()[0] * fraction
    return int(expected) + (rng.random() < expected - int(expected))


def _change_table(conn, tables, table: Table, values: Values, fraction: float, report: NightReport) -> None:
    rng = values.rng
    changes = _how_many(conn, table, fraction, rng)
    if changes:
        report.tables += 1
    for _ in range(changes):
        kind = rng.choices(("update", "insert", "delete"), weights=(2, 1, 1))[0]
        try:
            if kind == "update" and _update_one(conn, table, values):
                report.updated += 1
            elif kind == "delete" and (targets := _rows_of(conn, table, 3)):
                report.deleted += _delete_any(conn, tables, table, targets)
            else:
                error = Rows(conn, tables, table, values).insert_one()
                if error:
                    raise RuntimeError(error)
                report.inserted += 1
        except (Refused, RuntimeError) as refusal:
            report.refused[table.label] = f"{kind}: {refusal}"


def _updatable(table: Table) -> list[Column]:
    """Columns no key, unique index or partition bound reads."""
    keyed = set(table.pk) | table.unique_cols() | table.fk_cols() | {c for leaf in table.leaves for c in leaf}
    return [c for c in table.columns.values() if c.name not in keyed and not c.generated and not c.identity]


def _update_one(conn, table: Table, values: Values) -> bool:
    """One row's one or two columns given new values; False when the table has none to change."""
    cols, target = _updatable(table), _rows_of(conn, table, 1)
    if not cols or not target:
        return False
    error = None
    for _ in range(4):
        chosen = values.rng.sample(cols, min(len(cols), values.rng.choice((1, 2))))
        assign = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c.name)) for c in chosen)
        try:
            guarded(conn, sql.SQL("UPDATE {} SET {} WHERE tableoid = %s AND ctid = %s::tid").format(
                table.ident, assign), (*[values.fresh(c) for c in chosen], *target[0]))
            return True
        except Refused as refusal:
            error = refusal
    raise error


def _delete_any(conn, tables: dict[int, Table], table: Table, rows: list[tuple[int, str]]) -> int:
    """One of the rows deleted: a cascade can reach a row that a key of another table holds."""
    for row in rows[:-1]:
        try:
            return _delete(conn, tables, table, row)
        except (Refused, RuntimeError):
            pass
    return _delete(conn, tables, table, rows[-1])


_STILL_REFERENCED = re.compile(r"^Key \((?P<cols>.*)\)=\((?P<values>.*)\) is still referenced from table")


def _delete(conn, tables: dict[int, Table], table: Table, row: tuple[int, str], depth: int = 0) -> int:
    """Delete one row; where a foreign key without a cascade refuses (on this row, or on one a
    cascade reached), the referencing rows the refusal names go first."""
    for _ in range(16):
        try:
            return guarded(conn, sql.SQL("DELETE FROM {} WHERE tableoid = %s AND ctid = %s::tid").format(table.ident),
                           row)
        except Refused as refusal:
            fk = next((f for t in tables.values() for f in t.fks
                       if f.name == refusal.constraint and t.name == refusal.table), None)
            found = _STILL_REFERENCED.match(refusal.detail)
            if refusal.code != "23503" or fk is None or found is None or depth > 6:
                raise
            key = found.group("values").split(", ") if len(fk.cols) > 1 else [found.group("values")]
            if not _release(conn, tables, fk, _referencing(conn, tables, fk, key), depth):
                raise
    raise RuntimeError(f"{table.label}: a row still referenced after its children were deleted")


def _release(conn, tables: dict[int, Table], fk: ForeignKey, rows: list[tuple[int, str]], depth: int) -> int:
    """The referencing rows let go: their nullable key columns set NULL (how a cycle is left,
    and the row may be the one being deleted), else the rows deleted first."""
    child = tables[fk.child]
    nullable = [c for c in fk.cols if not child.columns[c].notnull]
    if not nullable:
        return sum(_delete(conn, tables, child, row, depth + 1) for row in rows)
    assign = sql.SQL(", ").join(sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in nullable)
    statement = sql.SQL("UPDATE {} SET {} WHERE tableoid = %s AND ctid = %s::tid").format(child.ident, assign)
    return sum(guarded(conn, statement, row) for row in rows)


def _referencing(conn, tables: dict[int, Table], fk: ForeignKey, key: list[str]) -> list[tuple[int, str]]:
    """The rows of the key's child table whose columns hold `key` (as text, as the server wrote it)."""
    if len(key) != len(fk.cols):
        return []
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT tableoid::oid, ctid::text FROM {} WHERE ({}) = ({})").format(
            tables[fk.child].ident, sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in fk.cols),
            sql.SQL(", ").join(sql.Placeholder() * len(key))), key)
        return cur.fetchall()


# -- comparing ----------------------------------------------------------------------------------

def content(dsn: str) -> dict[str, list[str]]:
    """Every application table's rows as text, sorted (partitions' rows under their root)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            out: dict[str, list[str]] = {}
            for table in read_catalog(conn).values():
                cur.execute(sql.SQL("SELECT t::text FROM {} t").format(table.ident))
                out[table.label] = sorted(r[0] for r in cur.fetchall())
        return out
    finally:
        conn.rollback()
        conn.close()


def sequence_positions(dsn: str) -> dict[str, int]:
    """The value each sequence's next nextval() returns (pg_sequences shows none after a RESTART)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT schemaname, sequencename, increment_by FROM pg_sequences WHERE schemaname <> ALL(%s)",
                        (list(SYSTEM_SCHEMAS),))
            out = {}
            for schema, name, step in cur.fetchall():
                cur.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name)))
                last, called = cur.fetchone()
                out[f"{schema}.{name}"] = last + step if called else last
        return out
    finally:
        conn.rollback()
        conn.close()


def differences(a: dict, b: dict, limit: int = 10) -> list[str]:
    """What differs between two content() or sequence_positions(): names and sizes or values."""
    def show(v):
        return f"{len(v)} rows" if isinstance(v, list) else v

    names = sorted(set(a) | set(b))
    return [f"{n}: {show(a.get(n))} vs {show(b.get(n))}" for n in names if a.get(n) != b.get(n)][:limit]
