"""The views around `db-sync mask`, and its record.

`ALTER COLUMN … TYPE` refuses a column a view or a materialized view reads. So the views that read
a masked column, and every view built on them, are dropped before the tables are rewritten and
recreated after, in the same transaction, from what the catalog says of them: their definition
(pg_get_viewdef), options (security_barrier, check_option, a materialized view's storage
parameters and tablespace), owner, privileges, comments, column defaults, INSTEAD OF triggers and a
materialized view's indexes; a materialized view is recreated WITH DATA, from masked rows. Any other
materialized view over a table the rules change is refreshed (a new heap: the old one, raw rows and
all, is unlinked at commit). What cannot be recreated faithfully (a rule other than the view's
own, column privileges, an object other than a view that depends on it) is refused, by the dry run
too, before anything changes. The catalog (dbsync.catalog) reads no views: the queries are here.

A database masked once records it in `dbsync.masked`; a second `mask` is refused whatever the key:
masking masked values gives what no sync writes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from psycopg2 import sql

from dbsync import sqltext
from dbsync.errors import DbSyncError, shown_name

RECORD_SCHEMA, RECORD_TABLE = "dbsync", "masked"
RECORD = sql.Identifier(RECORD_SCHEMA, RECORD_TABLE)

# The relation and its partitions or inheritance children: a view may read any of them.
_TREE = """WITH RECURSIVE tree(oid) AS (SELECT %s::oid UNION SELECT i.inhrelid FROM pg_inherits i
           JOIN tree t ON i.inhparent = t.oid) SELECT oid FROM tree"""
# Views and materialized views reading a relation (its listed columns, or any when the list is NULL).
_READERS = """SELECT DISTINCT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
 JOIN pg_class v ON v.oid = r.ev_class
 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %(rel)s
   AND r.ev_class <> %(rel)s AND v.relkind IN ('v', 'm')
   AND (%(cols)s::name[] IS NULL OR d.refobjsubid IN (
        SELECT attnum FROM pg_attribute WHERE attrelid = %(rel)s AND attname = ANY(%(cols)s::name[])))"""
_DESCRIBE = """SELECT n.nspname, c.relname, c.relkind, c.relispopulated, pg_get_viewdef(c.oid),
       coalesce(c.reloptions, '{}'), pg_get_userbyid(c.relowner), t.spcname, obj_description(c.oid, 'pg_class')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
 WHERE c.oid = %s"""
_ACL = """SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,
       a.is_grantable FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
 WHERE c.oid = %s"""
_COLUMNS = """SELECT a.attname, col_description(a.attrelid, a.attnum), pg_get_expr(d.adbin, d.adrelid),
       a.attacl IS NOT NULL
  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"""
_TRIGGERS = "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal ORDER BY tgname"
_INDEXES = "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s ORDER BY indexrelid"
# What else would stop a DROP VIEW: its own rules, objects depending on it or on its row type
# other than views (those are recreated too), and an extension owning it.
_BLOCKERS = """SELECT 'rule ' || quote_ident(rulename) FROM pg_rewrite
 WHERE ev_class = %(oid)s AND rulename <> '_RETURN'
UNION ALL
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
 WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s)
        OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = (SELECT reltype FROM pg_class WHERE oid = %(oid)s)))
   AND d.deptype IN ('n', 'e') AND d.classid <> 'pg_rewrite'::regclass
   AND NOT (d.classid = 'pg_type'::regclass AND d.objid = (SELECT reltype FROM pg_class WHERE oid = %(oid)s))"""


@dataclass
class View:
    oid: int
    schema: str
    name: str
    relkind: str  # 'v' or 'm'
    recreate: bool  # False: a materialized view only refreshed
    populated: bool = True
    definition: str = ""
    options: list[str] = field(default_factory=list)
    owner: str = ""
    tablespace: str | None = None
    comment: str | None = None
    acl: set[tuple[str, str, bool]] = field(default_factory=set)
    column_comments: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    triggers: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    reads: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        return f"{shown_name(self.schema)}.{shown_name(self.name)}"

    @property
    def kind(self) -> str:
        return "view" if self.relkind == "v" else "materialized view"

    @property
    def kind_sql(self) -> sql.SQL:
        return sql.SQL("VIEW") if self.relkind == "v" else sql.SQL("MATERIALIZED VIEW")

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)

    @property
    def action(self) -> str:
        if self.recreate:
            return "recreated"
        return "refreshed" if self.populated else "unpopulated"


@dataclass
class Affected:
    views: list[View]  # what a view reads comes before it


def _readers(cur, rel: int, columns: list[str] | None) -> set[int]:
    cur.execute(_TREE, (rel,))
    found: set[int] = set()
    for (member,) in cur.fetchall():
        cur.execute(_READERS, {"rel": member, "cols": columns})
        found |= {oid for (oid,) in cur.fetchall()}
    return found


def _closure(cur, start: set[int]) -> set[int]:
    seen, todo = set(start), list(start)
    while todo:
        for reader in _readers(cur, todo.pop(), None) - seen:
            seen.add(reader)
            todo.append(reader)
    return seen


def affected(cur, masked: dict[int, list[str]]) -> Affected:
    """The views to recreate (readers of a masked column, and what is built on them) and the
    materialized views to refresh (over any changed table); DbSyncError naming whatever cannot be
    recreated. `masked`: each changed table's oid and its masked columns (none for a where:)."""
    recreate = _closure(cur, set().union(*(_readers(cur, t, c) for t, c in masked.items() if c)))
    above = _closure(cur, set().union(*(_readers(cur, t, None) for t in masked)))
    saved = _pinned(cur)
    try:
        found = {oid: _describe(cur, oid, oid in recreate) for oid in recreate | above}
    finally:
        cur.execute("SELECT set_config('search_path', %s, true)", (saved,))
    found = {oid: v for oid, v in found.items() if v.recreate or v.relkind == "m"}
    problems = [p for v in found.values() if v.recreate for p in _blockers(cur, v)]
    if problems:
        raise DbSyncError("mask cannot recreate the views that read masked columns, nothing was changed: "
                          + "; ".join(sorted(problems)))
    for view in found.values():
        view.reads = _reads(cur, view.oid) & set(found)
    return Affected(_ordered(found))


def _describe(cur, oid: int, recreate: bool) -> View:
    cur.execute(_DESCRIBE, (oid,))
    schema, name, relkind, populated, definition, options, owner, space, comment = cur.fetchone()
    view = View(oid, schema, name, relkind, recreate, populated, definition, list(options), owner, space, comment)
    cur.execute(_ACL, (oid,))
    view.acl = set(cur.fetchall())
    cur.execute(_COLUMNS, (oid,))
    for column, col_comment, default, _ in cur.fetchall():
        if col_comment is not None:
            view.column_comments[column] = col_comment
        if default is not None:
            view.defaults[column] = default
    cur.execute(_TRIGGERS, (oid,))
    view.triggers = [t for (t,) in cur.fetchall()]
    cur.execute(_INDEXES, (oid,))
    view.indexes = [i for (i,) in cur.fetchall()]
    return view


def _blockers(cur, view: View) -> list[str]:
    cur.execute(_BLOCKERS, {"oid": view.oid})
    found = [f"{view.kind} {view.label}: {what} depends on it" for (what,) in cur.fetchall()]
    cur.execute(_COLUMNS, (view.oid,))
    found += [f"{view.kind} {view.label}: column {shown_name(c)} has column privileges"
              for c, _, _, acl in cur.fetchall() if acl]
    return found


def _reads(cur, oid: int) -> set[int]:
    cur.execute("SELECT DISTINCT d.refobjid FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
                " WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class = %s AND d.refclassid = 'pg_class'::regclass"
                " AND d.refobjid <> %s", (oid, oid))
    return {o for (o,) in cur.fetchall()}


def _ordered(views: dict[int, View]) -> list[View]:
    out, done = [], set()
    while len(out) < len(views):
        ready = sorted((v for o, v in views.items() if o not in done and v.reads <= done), key=lambda v: v.label)
        for view in ready:
            out.append(view)
            done.add(view.oid)
    return out


def _pinned(cur):
    """The session's search_path, then pg_catalog only: definitions read and replayed fully qualified."""
    cur.execute("SELECT current_setting('search_path'), set_config('search_path', 'pg_catalog', true)")
    return cur.fetchone()[0]


def drop(cur, found: Affected) -> None:
    """Drop the views to recreate, readers first (no CASCADE: nothing else may go with them)."""
    for view in reversed(found.views):
        if view.recreate:
            cur.execute(sql.SQL("DROP {} {}").format(view.kind_sql, view.ident))


def restore(cur, found: Affected) -> None:
    """Recreate the dropped views and refresh the other materialized views, in dependency order."""
    saved = _pinned(cur)
    try:
        for view in found.views:
            if view.recreate:
                _create(cur, view)
            elif view.populated:
                cur.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(view.ident))
    finally:
        cur.execute("SELECT set_config('search_path', %s, true)", (saved,))


def _create(cur, view: View) -> None:
    options = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v))
                                 for k, v in (o.split("=", 1) for o in view.options))
    with_ = sql.SQL(" WITH ({})").format(options) if view.options else sql.SQL("")
    if view.relkind == "v":
        definition = sqltext.deparsed(view.definition.rstrip(";"))
        cur.execute(sql.SQL("CREATE VIEW {}{} AS {}").format(view.ident, with_, definition))
    else:
        space = sql.SQL(" TABLESPACE {}").format(sql.Identifier(view.tablespace)) if view.tablespace else sql.SQL("")
        cur.execute(sql.SQL("CREATE MATERIALIZED VIEW {}{}{} AS {} WITH {}").format(
            view.ident, with_, space, sqltext.deparsed(view.definition.rstrip().rstrip(";")),
            sql.SQL("DATA" if view.populated else "NO DATA")))
    kind = view.kind_sql
    cur.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(kind, view.ident, sql.Identifier(view.owner)))
    _grant(cur, view)
    if view.comment is not None:
        cur.execute(sql.SQL("COMMENT ON {} {} IS {}").format(kind, view.ident, sql.Literal(view.comment)))
    for column, text in view.column_comments.items():
        cur.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(view.ident, sql.Identifier(column),
                                                                    sql.Literal(text)))
    for column, default in view.defaults.items():
        cur.execute(sql.SQL("ALTER VIEW {} ALTER COLUMN {} SET DEFAULT {}").format(
            view.ident, sql.Identifier(column), sqltext.deparsed(default)))
    for statement in view.triggers + view.indexes:  # the server's own text for them
        cur.execute(sqltext.deparsed(statement))


def _grant(cur, view: View) -> None:
    """The privileges the view had: those its creation gave (default privileges) and it lacked
    revoked, those it had granted again."""
    oid = _oid(cur, view)
    cur.execute(_ACL, (oid,))
    for grantee, privilege, _ in set(cur.fetchall()) - view.acl:
        cur.execute(sql.SQL("REVOKE {} ON {} FROM {}").format(sqltext.deparsed(privilege), view.ident, _role(grantee)))
    cur.execute(_ACL, (oid,))
    now = set(cur.fetchall())
    for grantee, privilege, grantable in view.acl - now:
        cur.execute(sql.SQL("GRANT {} ON {} TO {}{}").format(sqltext.deparsed(privilege), view.ident, _role(grantee),
                                                            sql.SQL(" WITH GRANT OPTION" if grantable else "")))


def _oid(cur, view: View) -> int:
    cur.execute("SELECT %s::regclass::oid", (view.label,))
    return cur.fetchone()[0]


def _role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


# -- the record -------------------------------------------------------------------------------------

def rules_digest(rules) -> str:
    """A digest of what the rules do (every table's columns, rows and where:, the gate's patterns)."""
    shape = {"tables": {name: {"columns": {c: r.describe() for c, r in sorted(t.columns.items())},
                               "rows": t.copy_rows, "where": t.where} for name, t in sorted(rules.tables.items())},
             "personal_data": [p.pattern for p in rules.personal_data],
             "not_personal": [p.pattern for p in rules.not_personal]}
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()


def refuse_if_masked(conn) -> None:
    """A second `mask` would mask masked values: refused, whatever the key."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{RECORD_SCHEMA}.{RECORD_TABLE}",))
        if cur.fetchone()[0] is None:
            return
        cur.execute(sql.SQL("SELECT masked_at AT TIME ZONE 'UTC', rules_digest FROM {} ORDER BY masked_at DESC"
                            " LIMIT 1").format(RECORD))
        last = cur.fetchone()
    if last is not None:
        raise DbSyncError(f"this database was masked already ({last[0]:%Y-%m-%d %H:%M} UTC, rules digest"
                          f" {last[1][:12]}): masking masked values again gives what no sync writes, so nothing was"
                          " changed; mask a fresh copy of prod instead")


def record_masked(cur, rules) -> None:
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(RECORD_SCHEMA)))
    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (masked_at timestamptz NOT NULL DEFAULT now(),"
                        " rules text NOT NULL, rules_digest text NOT NULL)").format(RECORD))
    cur.execute(sql.SQL("INSERT INTO {} (rules, rules_digest) VALUES (%s, %s)").format(RECORD),
                (rules.origin, rules_digest(rules)))
