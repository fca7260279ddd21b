"""Sequences, the columns they feed, and where each sequence stands, read from pg_catalog.

Who feeds a column comes from pg_depend, never from names or information_schema (which hides
objects the role lacks privileges on):
- a DEFAULT calling nextval() depends on its sequence through its pg_attrdef row (deptype 'n'):
  serial columns and any column using a sequence it does not own;
- an identity column's sequence is an internal dependency (deptype 'i') of the column;
- a serial sequence is auto-dependent (deptype 'a') on its column: OWNED BY. A column that owns a
  sequence but has lost its default is what the old sync left behind — unless a trigger feeds it;
- a row-level BEFORE INSERT trigger whose function calls nextval() on a sequence (GitLab's
  `NEW."id" := nextval('ci_builds_id_seq'::regclass)`): nothing in the catalog links a function's
  body to a sequence, so its text (pg_proc.prosrc) is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from psycopg2 import sql

from dbsync.catalog.models import Feed, MissingKey, Sequence, TableKey
from dbsync.catalog.privileges import insert_grantees
from dbsync.catalog.query import BASE_TYPE_JOIN, BASE_TYPES, USER_SCHEMA, fetch

# The comment reset-sequences leaves on a sequence it created for a key the old sync left with
# none: how a later run still recognises that database (see sequences.plan.old_sync_signature).
CREATED_MARK = "db-sync: created for a key without a default"

# pg_get_sequence_data() exists from PostgreSQL 18 on; older servers read each sequence relation.
SEQUENCE_DATA_FUNCTION_SINCE = 180000
# Sequences per position query on servers without pg_get_sequence_data (a UNION ALL of reads).
POSITIONS_PER_QUERY = 1000

_SEQUENCES = sql.SQL("""
SELECT s.oid, n.nspname, s.relname, quote_ident(n.nspname) || '.' || quote_ident(s.relname),
       format_type(ps.seqtypid, NULL), ps.seqstart, ps.seqincrement, ps.seqmin, ps.seqmax, ps.seqcache,
       ps.seqcycle, pg_get_userbyid(s.relowner),
       has_sequence_privilege(s.oid, 'SELECT'), has_sequence_privilege(s.oid, 'UPDATE'),
       pg_has_role(s.relowner, 'USAGE'), o.nspname, o.relname, o.attname, o.deptype
FROM pg_sequence ps JOIN pg_class s ON s.oid = ps.seqrelid JOIN pg_namespace n ON n.oid = s.relnamespace
-- OWNED BY (serial, 'a') or the identity ('i') column it belongs to
LEFT JOIN (
    SELECT d.objid, tn.nspname, t.relname, a.attname, d.deptype
    FROM pg_depend d
    JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
) o ON o.objid = s.oid
WHERE {where}
""")

_FEEDS = sql.SQL("""
WITH RECURSIVE {base_types},
links AS (
    -- DEFAULT nextval('s'): the attrdef row depends on the sequence
    SELECT ad.adrelid AS tbl, ad.adnum AS att, d.refobjid AS seq, 'default' AS via
    FROM pg_attrdef ad
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
    UNION ALL
    -- identity (internal) and serial/OWNED BY (auto) dependencies of a sequence on a column
    SELECT d.refobjid, d.refobjsubid, d.objid, CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'owned' END
    FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('i', 'a') AND d.refobjsubid > 0
),
fed AS (
    SELECT l.tbl, l.att, l.seq, array_agg(DISTINCT l.via) AS vias
    FROM links l JOIN pg_class s ON s.oid = l.seq AND s.relkind = 'S'
    GROUP BY l.tbl, l.att, l.seq
)
SELECT f.tbl, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       a.attname, a.attnum, bt.typname, f.vias, a.attidentity <> '', ad.oid IS NOT NULL, a.attnotnull,
       has_column_privilege(c.oid, a.attnum, 'SELECT'), pg_has_role(c.relowner, 'USAGE'), f.seq
FROM fed f
-- views and foreign tables too: an INSERT through them takes the default as well
JOIN pg_class c ON c.oid = f.tbl AND c.relkind IN ('r', 'p', 'v', 'f') AND c.relpersistence <> 't'
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = f.tbl AND a.attnum = f.att AND NOT a.attisdropped{base_type_join}
LEFT JOIN pg_attrdef ad ON ad.adrelid = f.tbl AND ad.adnum = f.att
WHERE {user_schema}
  -- an owned sequence feeds its column only while the column has no other default
  AND ('default' = ANY (f.vias) OR 'identity' = ANY (f.vias) OR ad.oid IS NULL)
  AND a.attgenerated = ''
ORDER BY n.nspname, c.relname, a.attnum
""").format(base_types=BASE_TYPES, base_type_join=BASE_TYPE_JOIN, user_schema=USER_SCHEMA)

# Integer single-column primary keys with no default, no identity and no sequence: what the old
# sync left of a serial column. A key that is also a foreign key (1:1 tables) takes its value
# from the referenced row, so it is left alone.
_MISSING_KEYS = sql.SQL("""
WITH RECURSIVE {base_types}
SELECT c.oid, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname, a.attnum,
       bt.typname, has_column_privilege(c.oid, a.attnum, 'SELECT'), pg_has_role(c.relowner, 'USAGE'),
       has_schema_privilege(c.relnamespace, 'CREATE'), pg_get_userbyid(c.relowner)
FROM pg_constraint pk
JOIN pg_class c ON c.oid = pk.conrelid AND c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND c.relpersistence <> 't'
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = pk.conkey[1]{base_type_join}
WHERE pk.contype = 'p' AND cardinality(pk.conkey) = 1 AND {user_schema}
  AND bt.typname IN ('int2', 'int4', 'int8')
  AND a.attidentity = '' AND a.attgenerated = ''
  AND NOT EXISTS (SELECT 1 FROM pg_attrdef ad WHERE ad.adrelid = c.oid AND ad.adnum = a.attnum)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                  WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid AND d.refobjsubid = a.attnum)
  AND NOT EXISTS (SELECT 1 FROM pg_constraint fk WHERE fk.conrelid = c.oid AND fk.contype = 'f'
                  AND a.attnum = ANY (fk.conkey))
  AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
ORDER BY n.nspname, c.relname
""").format(base_types=BASE_TYPES, base_type_join=BASE_TYPE_JOIN, user_schema=USER_SCHEMA)

# Enabled row-level BEFORE INSERT triggers (tgtype bits ROW 1 | BEFORE 2 | INSERT 4) whose
# function's text mentions nextval, with the table's and the function's schemas (where an
# unqualified sequence name is looked for).
_NEXTVAL_TRIGGERS = sql.SQL("""
SELECT c.oid, n.nspname, fn.nspname, p.prosrc
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_namespace fn ON fn.oid = p.pronamespace
WHERE t.tgtype & 7 = 7 AND t.tgenabled <> 'D' AND p.prosrc ~* 'nextval' AND {user_schema}
""").format(user_schema=USER_SCHEMA)

# Each (table, column name or NULL, sequence schema, sequence name) a trigger's text names, as
# a column of that table and a sequence. A NULL column is the table's column that owns the
# sequence (a function calling nextval without a recognisable NEW.<column> := …).
_TRIGGER_TARGETS = sql.SQL("""
WITH RECURSIVE {base_types}
SELECT u.i, c.oid, n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname,
       a.attnum, bt.typname, a.attnotnull, has_column_privilege(c.oid, a.attnum, 'SELECT'),
       pg_has_role(c.relowner, 'USAGE'), s.oid
FROM unnest(%(tables)s::oid[], %(columns)s::text[], %(schemas)s::text[], %(names)s::text[])
     WITH ORDINALITY AS u(tbl, col, seq_schema, seq_name, i)
JOIN pg_class c ON c.oid = u.tbl
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_namespace sn ON sn.nspname = u.seq_schema
JOIN pg_class s ON s.relnamespace = sn.oid AND s.relname = u.seq_name AND s.relkind = 'S'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
     AND (a.attname = u.col
          OR (u.col IS NULL AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                        AND d.objid = s.oid AND d.refobjid = c.oid AND d.refobjsubid = a.attnum
                                        AND d.deptype = 'a'))){base_type_join}
ORDER BY u.i
""").format(base_types=BASE_TYPES, base_type_join=BASE_TYPE_JOIN)

# NEW.<column> := <expression>; and nextval('<regclass text>' …) inside an expression. The
# column is a plain or a double-quoted identifier; the sequence a string literal ('' is a quote).
_ASSIGNMENT = re.compile(r"""\bNEW\s*\.\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*:?=\s*([^;]*)""", re.I)
_NEXTVAL = re.compile(r"""\bnextval\s*\(\s*\(?\s*'((?:[^']|'')+)'""", re.I)
_IDENT = re.compile(r'\s*("(?:[^"]|"")+"|[^".\s]+)\s*')

# Relations a max() over each table locks (itself, its partitions/children, all their indexes),
# and each table's ancestors (a parent's max() already covers its children's rows).
_TREE = """
WITH RECURSIVE tree AS (
    SELECT t.oid AS root, t.oid AS rel, ARRAY[]::oid[] AS path FROM unnest(%s::oid[]) AS t(oid)
    UNION ALL
    SELECT tree.root, i.inhrelid, tree.path || tree.rel FROM tree JOIN pg_inherits i ON i.inhparent = tree.rel
    WHERE NOT i.inhrelid = ANY (tree.path)
),
up AS (
    SELECT t.oid AS child, i.inhparent AS parent FROM unnest(%s::oid[]) AS t(oid)
    JOIN pg_inherits i ON i.inhrelid = t.oid
    UNION
    SELECT up.child, i.inhparent FROM up JOIN pg_inherits i ON i.inhrelid = up.parent
)
SELECT r.root,
       count(*) + coalesce(sum((SELECT count(*) FROM pg_index x WHERE x.indrelid = r.rel)), 0),
       (SELECT coalesce(array_agg(up.parent), '{}') FROM up WHERE up.child = r.root)
FROM tree r GROUP BY r.root
"""


def _sequence(row) -> Sequence:
    (oid, schema, name, label, typ, start, inc, smin, smax, cache, cycle, owner, can_read, can_update, ours,
     o_schema, o_table, o_column, o_deptype) = row
    return Sequence(oid, schema, name, label, typ, int(start), int(inc), int(smin), int(smax), int(cache), cycle,
                    owner, can_read, can_update, ours,
                    owned_by=(o_schema, o_table, o_column) if o_table is not None else None,
                    identity=o_deptype == "i")


def read_sequences(cur, *, oids: Iterable[int] = (), user_schemas: bool = False,
                   name: TableKey | None = None) -> dict[int, Sequence]:
    """oid → Sequence: those of `oids`, every non-temporary one in a user schema (`user_schemas`),
    or the one called `name`."""
    where = [sql.SQL("s.oid = ANY (%(oids)s::oid[])")]
    if user_schemas:
        where.append(sql.SQL("({} AND s.relpersistence <> 't')").format(USER_SCHEMA))
    if name is not None:
        where.append(sql.SQL("(n.nspname = %(schema)s AND s.relname = %(name)s)"))
    query = _SEQUENCES.format(where=sql.SQL(" OR ").join(where))
    rows = fetch(cur, query, {"oids": list(oids), "schema": name and name[0], "name": name and name[1]})
    return {row[0]: _sequence(row) for row in rows}


def _selected(schema: str, table: str, schemas: list[str] | None, tables: set[TableKey] | None) -> bool:
    return (not schemas or schema in schemas) and (tables is None or (schema, table) in tables)


def select_feeds(feeds: list[Feed], schemas: list[str] | None = None,
                 tables: set[TableKey] | None = None) -> list[Feed]:
    """The sequences that feed a column of `schemas` / `tables`, with *all* the columns they feed
    (a shared sequence must clear every table)."""
    if not schemas and tables is None:
        return feeds
    wanted = {f.sequence.oid for f in feeds if _selected(f.schema, f.table, schemas, tables)}
    return [f for f in feeds if f.sequence.oid in wanted]


def selected_keys(keys: list[MissingKey], schemas: list[str] | None = None,
                  tables: set[TableKey] | None = None) -> list[MissingKey]:
    return [m for m in keys if _selected(m.feed.schema, m.feed.table, schemas, tables)]


def count_sequences(cur) -> int:
    """Every sequence of the database, cheaply: whether the engine's reads are worth two connections."""
    return fetch(cur, sql.SQL("SELECT count(*) FROM pg_catalog.pg_sequence"))[0][0]


def read_feeds(cur, schemas: list[str] | None = None, tables: set[TableKey] | None = None,
               sequences: dict[int, Sequence] | Callable[[], dict[int, Sequence]] | None = None) -> list[Feed]:
    """Every column fed by a sequence, with its sequence: by a default, an identity, OWNED BY, or
    a BEFORE INSERT trigger (kind `trigger`; has_default is True: an INSERT without the column
    takes the sequence's value). `schemas` / `tables`: see select_feeds. `sequences` (oid →
    Sequence): those already read, or a function giving them (called once the columns are read:
    another session may be reading them meanwhile); the others are read here."""
    rows = fetch(cur, _FEEDS)
    triggered = _trigger_links(cur)
    sequences = dict((sequences() if callable(sequences) else sequences) or {})
    missing = ({row[-1] for row in rows} | {row[-1] for row in triggered}) - sequences.keys()
    if missing:
        sequences.update(read_sequences(cur, oids=missing))
    feeds = []
    for (tbl, schema, table, label, column, attnum, base_type, vias, is_identity, has_default, not_null,
         can_select, owns_table, seq_oid) in rows:
        kind = "identity" if is_identity else ("serial" if "owned" in vias else "default")
        feeds.append(Feed(tbl, schema, table, label, column, attnum, base_type, kind, has_default or is_identity,
                          not_null, can_select, owns_table, sequences[seq_oid]))
    by_link = {(f.table_oid, f.attnum, f.sequence.oid): f for f in feeds}
    for tbl, schema, table, label, column, attnum, base_type, not_null, can_select, owns_table, seq_oid in triggered:
        f = by_link.get((tbl, attnum, seq_oid))
        if f is None:
            f = by_link[(tbl, attnum, seq_oid)] = Feed(tbl, schema, table, label, column, attnum, base_type,
                                                       "trigger", True, not_null, can_select, owns_table,
                                                       sequences[seq_oid])
            feeds.append(f)
        elif not f.has_default:
            # GitLab's way: the sequence is OWNED BY the column, which has no default; the
            # trigger feeds it, and it must never be given a default (two ids per INSERT).
            f.kind, f.has_default = "trigger", True
    feeds.sort(key=lambda f: (f.schema, f.table, f.attnum))
    return select_feeds(feeds, schemas, tables)


def _identifier(text: str) -> str:
    """An identifier as PostgreSQL reads it: a quoted one as written, others folded to lower case."""
    return text[1:-1].replace('""', '"') if text.startswith('"') else text.lower()


def regclass_parts(text: str) -> list[str] | None:
    """The parts of a regclass literal ('s', 'public.s', '"Odd"."Seq"'); None if it is not a name."""
    parts, pos = [], 0
    while True:
        m = _IDENT.match(text, pos)
        if m is None:
            return None
        parts.append(_identifier(m.group(1)))
        pos = m.end()
        if pos == len(text):
            return parts
        if text[pos] != ".":
            return None
        pos += 1


def trigger_calls(prosrc: str) -> list[tuple[str | None, list[str]]]:
    """(column, sequence name parts) for each nextval('…') in a trigger function's text: the
    column is the one assigned (NEW.<column> := … nextval(…) …), else None."""
    calls: list[tuple[str | None, list[str]]] = []
    assigned = set()
    for m in _ASSIGNMENT.finditer(prosrc):
        for n in _NEXTVAL.finditer(m.group(2)):
            assigned.add(m.start(2) + n.start())
            parts = regclass_parts(n.group(1).replace("''", "'"))
            if parts:
                calls.append((_identifier(m.group(1)), parts))
    for n in _NEXTVAL.finditer(prosrc):
        parts = regclass_parts(n.group(1).replace("''", "'"))
        if n.start() not in assigned and parts:
            calls.append((None, parts))
    return calls


def _trigger_links(cur) -> list[tuple]:
    """The columns BEFORE INSERT triggers feed from a sequence: one row per (column, sequence).
    An unqualified sequence name is looked for in the table's schema, then the function's."""
    candidates: list[tuple[int, str | None, str, str, int]] = []  # table, column, schema, name, call
    for tbl, table_schema, function_schema, prosrc in fetch(cur, _NEXTVAL_TRIGGERS):
        for column, parts in trigger_calls(prosrc):
            schemas = [parts[-2]] if len(parts) > 1 else list(dict.fromkeys((table_schema, function_schema)))
            call = len(candidates)  # one id per nextval() call, shared by its schema candidates
            candidates += [(tbl, column, schema, parts[-1], call) for schema in schemas]
    if not candidates:
        return []
    tables, columns, schemas, names, calls = (list(x) for x in zip(*candidates, strict=True))
    rows = fetch(cur, _TRIGGER_TARGETS, {"tables": tables, "columns": columns, "schemas": schemas, "names": names})
    links: dict[tuple, tuple] = {}
    done: set[int] = set()
    for i, *row in rows:  # in the candidates' order: the first schema that has the sequence wins
        if calls[i - 1] not in done:
            done.add(calls[i - 1])
            links.setdefault((row[0], row[5], row[-1]), tuple(row))
    return list(links.values())


def read_missing_keys(cur, schemas: list[str] | None = None, tables: set[TableKey] | None = None, *,
                      fed: Iterable[Feed] = ()) -> list[MissingKey]:
    """Integer single-column primary keys nothing feeds (no default, identity, owned sequence, or
    trigger among `fed`); the old sync's serial columns look like this, and so do keys the
    application fills itself."""
    fed_columns = {(f.table_oid, f.attnum) for f in fed}
    found = []
    rows = fetch(cur, _MISSING_KEYS)
    for tbl, schema, table, label, column, attnum, typ, can_select, owns, can_create, owner in rows:
        if _selected(schema, table, schemas, tables) and (tbl, attnum) not in fed_columns:
            feed = Feed(tbl, schema, table, label, column, attnum, typ, "created", False, True, can_select, owns)
            found.append(MissingKey(feed, owner, can_create))
    if found:
        grantees = insert_grantees(cur, [m.feed.table_oid for m in found])
        for m in found:
            m.insert_grantees = grantees.get(m.feed.table_oid, [])
    return found


def existing_columns(cur, columns: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], bool]:
    """(schema, table, column) → NOT NULL, for those of `columns` this database has."""
    if not columns:
        return {}
    schemas, tables, names = (list(x) for x in zip(*columns, strict=True))
    rows = fetch(cur, "SELECT n.nspname, c.relname, a.attname, a.attnotnull"
                      " FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(s, t, a)"
                      " JOIN pg_namespace n ON n.nspname = u.s JOIN pg_class c ON c.relnamespace = n.oid"
                      " AND c.relname = u.t JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = u.a"
                      " AND a.attnum > 0 AND NOT a.attisdropped", (schemas, tables, names))
    return {(s, t, a): not_null for s, t, a, not_null in rows}


def created_here(cur) -> set[int]:
    """The sequences reset-sequences created for keys the old sync left without one (CREATED_MARK)."""
    rows = fetch(cur, "SELECT objoid FROM pg_description WHERE classoid = 'pg_class'::regclass"
                      " AND objsubid = 0 AND description = %s", (CREATED_MARK,))
    return {oid for (oid,) in rows}


def annotate_tree(cur, feeds: list[Feed]) -> None:
    """Fill lock_cost and ancestors for each feed's table, in one query."""
    oids = sorted({f.table_oid for f in feeds})
    if not oids:
        return
    info = {root: (int(cost), list(anc)) for root, cost, anc in fetch(cur, _TREE, (oids, oids))}
    for f in feeds:
        f.lock_cost, f.ancestors = info.get(f.table_oid, (1, []))


def relation_names(cur, schemas: set[str]) -> dict[str, dict[str, str]]:
    """schema → {relation name → relkind}, to choose names for new sequences."""
    cur.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ANY(%s)",
        (sorted(schemas),),
    )
    out: dict[str, dict[str, str]] = {s: {} for s in schemas}
    for schema, name, kind in cur.fetchall():
        out[schema][name] = kind
    return out


# -- positions -----------------------------------------------------------------------------------

def position_states(cur, sequences: list[Sequence]) -> list[tuple[int | None, bool | None]]:
    """(last_value, is_called) of each sequence, in order, in one query, in the caller's
    transaction (the sync's source snapshot). (None, None) where the role may not read it (PG 18);
    older servers raise instead. At most POSITIONS_PER_QUERY sequences on older servers."""
    if not sequences:
        return []
    if cur.connection.info.server_version >= SEQUENCE_DATA_FUNCTION_SINCE:
        # PostgreSQL 18's function (what pg_dump 18 uses): one call per sequence instead of a
        # scan per sequence in a UNION ALL.
        cur.execute("SELECT d.last_value, d.is_called FROM unnest(%s::oid[]) WITH ORDINALITY AS u(seq, i),"
                    " LATERAL pg_get_sequence_data(u.seq::regclass) AS d ORDER BY u.i",
                    ([s.oid for s in sequences],))
    else:
        cur.execute(sql.SQL("SELECT last_value, is_called FROM ({}) AS u ORDER BY i").format(
            sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT {} AS i, last_value, is_called FROM {}").format(sql.Literal(i), s.ident)
                for i, s in enumerate(sequences))))
    return cur.fetchall()


def next_value(seq: Sequence, last_value: int, is_called: bool) -> int:
    """What the next nextval() returns; a CYCLE sequence past its bound wraps. An exhausted
    NO CYCLE sequence gives a value past its bound: its next nextval() fails."""
    value = int(last_value) + seq.increment if is_called else int(last_value)
    if seq.cycle and not seq.min <= value <= seq.max:
        value = seq.min if seq.increment > 0 else seq.max
    return value


def read_positions(cur, sequences: list[Sequence]) -> dict[str, int | None]:
    """label → what the next nextval() returns (None where the role may not read it)."""
    out: dict[str, int | None] = {}
    for i in range(0, len(sequences), POSITIONS_PER_QUERY):
        chunk = sequences[i:i + POSITIONS_PER_QUERY]
        for seq, (last, called) in zip(chunk, position_states(cur, chunk), strict=True):
            out[seq.label] = None if last is None else next_value(seq, last, called)
    return out
