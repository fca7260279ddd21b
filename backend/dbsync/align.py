"""The DDL that gives the target the source's sequences, `nextval` defaults and identity columns
for the synced tables, so that the engine can then position every sequence. Runs inside the
sync's target transaction: all of it rolls back with it.

The source decides: a column the source feeds gets the source's default (or none: a column a
trigger feeds has none), identity and OWNED BY, and never one the source does not have; every
statement that changes the target's schema is reported as a SchemaChange.
"""

from __future__ import annotations

from psycopg2 import sql

from dbsync import sqltext
from dbsync.catalog import Catalog, Feed, Sequence, Table, TableKey, read_catalog
from dbsync.catalog.privileges import insert_grantees
from dbsync.errors import DbSyncError, shown_name
from dbsync.results import SchemaChange

_SEQUENCE_TYPES = ("smallint", "integer", "bigint")


def _options(seq: Sequence, *, with_type: bool = True) -> sql.Composed:
    parts = []
    if with_type:
        # A sequence's type is always one of these three; never pass catalog text through unchecked.
        if seq.type not in _SEQUENCE_TYPES:
            raise DbSyncError(f"unexpected sequence type {seq.type!r}")
        parts.append(sql.SQL("AS {}").format(sqltext.type_name(seq.type)))
    parts += [
        sql.SQL("INCREMENT BY {}").format(sql.Literal(seq.increment)),
        sql.SQL("MINVALUE {}").format(sql.Literal(seq.min)),
        sql.SQL("MAXVALUE {}").format(sql.Literal(seq.max)),
        sql.SQL("START WITH {}").format(sql.Literal(seq.start)),
        sql.SQL("CACHE {}").format(sql.Literal(seq.cache)),
        sql.SQL("CYCLE") if seq.cycle else sql.SQL("NO CYCLE"),
    ]
    return sql.SQL(" ").join(parts)


def _restart(seq: Sequence, position: int | None) -> sql.Composed:
    """RESTART WITH the source's next value (or its START), clamped into its bounds: an exhausted
    source sequence stands one step past them, and ALTER would refuse that."""
    value = seq.start if position is None else min(max(position, seq.min), seq.max)
    return sql.SQL("RESTART WITH {}").format(sql.Literal(value))


class _Aligner:
    """One pass over the synced tables' feeds, recording each change as a SchemaChange."""

    def __init__(self, cur, source: Catalog, target: Catalog, positions: dict[str, int | None]):
        self.cur, self.source, self.target, self.positions = cur, source, target, positions
        self.changes: list[SchemaChange] = []
        self.created: set[TableKey] = set()
        self.altered: set[TableKey] = set()

    def run(self, sql_: sql.Composable, obj: str | None = None, action: str | None = None,
            detail: str | None = None) -> None:
        self.cur.execute(sql_)
        if action:
            self.changes.append(SchemaChange(object=obj, action=action, detail=detail))

    def where(self, f: Feed) -> tuple[Table, sql.Composed, str]:
        table = self.target.tables[f.table_key]
        return table, sql.SQL("ALTER TABLE {} ALTER COLUMN {}").format(table.ident, sql.Identifier(f.column)), \
            f"{table.label}.{shown_name(f.column)}"

    def identity(self, f: Feed) -> None:
        sseq = f.sequence
        scol = self.source.tables[f.table_key].columns[f.column]
        table, alter, label = self.where(f)
        tcol = table.columns[f.column]
        mode = "ALWAYS" if scol.identity == "a" else "BY DEFAULT"
        mode_sql = sql.SQL("ALWAYS") if scol.identity == "a" else sql.SQL("BY DEFAULT")
        if tcol.identity:
            if tcol.identity != scol.identity:
                self.run(alter + sql.SQL(" SET GENERATED {}").format(mode_sql), label, "identity_mode_set", mode)
            tseq = self._identity_sequence(f)
            if tseq is not None and not sseq.same_definition(tseq):
                # The identity's own sequence (its name may differ from prod's); RESTART keeps
                # the current position from falling outside the new bounds.
                self.run(sql.SQL("ALTER SEQUENCE {} {} {}").format(
                    tseq.ident, _options(sseq), _restart(sseq, self.positions.get(sseq.label))),
                    tseq.label, "sequence_altered", label)
            return
        if tcol.default is not None:
            self.run(alter + sql.SQL(" DROP DEFAULT"), label, "default_dropped", tcol.default)
        # A sequence the engine once created for this column (OWNED BY it) would clash with the
        # identity's name; the identity replaces it.
        for tseq in list(self.target.sequences.values()):
            if tseq.owned_by == (f.schema, f.table, f.column) and not tseq.identity:
                self.run(sql.SQL("DROP SEQUENCE {}").format(tseq.ident), tseq.label, "sequence_dropped", label)
                del self.target.sequences[tseq.key]
        if not tcol.not_null:
            self.run(alter + sql.SQL(" SET NOT NULL"), label, "not_null_set")
        if sseq.key in self.target.sequences:
            raise DbSyncError(f"cannot restore identity on {label}: the target already has a sequence"
                              f" {sseq.label} that is not owned by this column")
        self.run(alter + sql.SQL(" ADD GENERATED {} AS IDENTITY (SEQUENCE NAME {} {})").format(
            mode_sql, sseq.ident, _options(sseq, with_type=False)), label, "identity_restored", sseq.label)

    def _identity_sequence(self, f: Feed) -> Sequence | None:
        for t in self.target.feeds:
            if t.kind == "identity" and t.table_key == f.table_key and t.column == f.column:
                return t.sequence
        return None

    def plain(self, f: Feed, feeds: list[Feed]) -> None:
        """A column prod feeds from a plain sequence (a serial, a shared or trigger-fed one)."""
        table, alter, label = self.where(f)
        tcol = table.columns[f.column]
        if tcol.identity:
            self._drop_identity(f, alter, label)
        tseq = self._plain_sequence(f, feeds)
        self._ownership(f, table, tseq, label)
        self._default(f, tcol, alter, label)

    def _drop_identity(self, f: Feed, alter: sql.Composable, label: str) -> None:
        """DROP IDENTITY drops the identity's sequence too; when it has prod's sequence name, that
        sequence is now missing and is created next."""
        self.run(alter + sql.SQL(" DROP IDENTITY"), label, "identity_dropped")
        for key, tseq in list(self.target.sequences.items()):
            if tseq.identity and tseq.owned_by == (f.schema, f.table, f.column):
                del self.target.sequences[key]
        tcol = self.target.tables[f.table_key].columns[f.column]
        tcol.identity, tcol.default = "", None

    def _plain_sequence(self, f: Feed, feeds: list[Feed]) -> Sequence | None:
        """Prod's sequence on the target, created or altered to prod's definition; the target's
        sequence as it was (None: created now)."""
        sseq = f.sequence
        tseq = self.target.sequences.get(sseq.key)
        if tseq is None and sseq.key not in self.created:
            self._ensure_schema(sseq.schema)
            self.run(sql.SQL("CREATE SEQUENCE {} {}").format(sseq.ident, _options(sseq)),
                     sseq.label, "sequence_created")
            self.created.add(sseq.key)
            self._grant_like_inserters(sseq, [self.target.tables[x.table_key] for x in feeds
                                              if x.sequence.key == sseq.key])
        elif tseq is not None and not sseq.same_definition(tseq) and sseq.key not in self.altered:
            # RESTART: the target's current position may lie outside prod's bounds (a raised
            # MINVALUE, the other direction, a narrower type), which ALTER refuses. The engine
            # sets the final position afterwards.
            self.run(sql.SQL("ALTER SEQUENCE {} {} {}").format(
                tseq.ident, _options(sseq), _restart(sseq, self.positions.get(sseq.label))),
                sseq.label, "sequence_altered")
            self.altered.add(sseq.key)
        return tseq

    def _ownership(self, f: Feed, table, tseq: Sequence | None, label: str) -> None:
        """OWNED BY only where prod's sequence is owned by this very column (a serial, or GitLab's
        trigger-fed ids); a default using another column's sequence owns nothing."""
        sseq, column = f.sequence, (f.schema, f.table, f.column)
        if sseq.owned_by != column or sseq.identity or (tseq is not None and tseq.owned_by == column):
            return
        if table.owner != (tseq.owner if tseq else None):
            self.run(sql.SQL("ALTER SEQUENCE {} OWNER TO {}").format(sseq.ident, sql.Identifier(table.owner)),
                     sseq.label, "sequence_owner_set", table.owner)
        self.run(sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
            sseq.ident, table.ident, sql.Identifier(f.column)), sseq.label, "owned_by_set", label)

    def _default(self, f: Feed, tcol, alter: sql.Composable, label: str) -> None:
        """Prod's default, or none where prod has none (a trigger feeds it: a default here would
        take a second id). The expression is the server's own deparse (pg_get_expr) of prod's,
        fully qualified; it names the sequence made to exist above."""
        scol = self.source.tables[f.table_key].columns[f.column]
        if scol.default is not None and tcol.default != scol.default:
            self.run(alter + sql.SQL(" SET DEFAULT {}").format(sqltext.deparsed(scol.default)), label,
                     "default_restored" if tcol.default is None else "default_replaced", scol.default)
            tcol.default = scol.default
        elif scol.default is None and tcol.default is not None:
            self.run(alter + sql.SQL(" DROP DEFAULT"), label, "default_dropped", tcol.default)
            tcol.default = None

    def _ensure_schema(self, schema: str) -> None:
        self.cur.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,))
        if not self.cur.fetchone()[0]:
            self.run(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)), shown_name(schema),
                     "schema_created")

    def _grant_like_inserters(self, seq: Sequence, tables: list[Table]) -> None:
        """USAGE, SELECT on a created sequence for every target role that may INSERT into its
        tables (prod's roles need not exist on staging; the target's own grants decide)."""
        grantees = insert_grantees(self.cur, [t.oid for t in tables])
        for grantee in sorted({g for gs in grantees.values() for g in gs}, key=lambda g: g or ""):
            who = sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee)
            self.run(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(seq.ident, who), seq.label,
                     "sequence_granted", "USAGE, SELECT to " + (grantee or "PUBLIC"))


def align_sequences(conn, source: Catalog, target: Catalog, table_keys: set[TableKey],
                    positions: dict[str, int | None]) -> list[SchemaChange]:
    """Give the target the source's sequences, defaults and identity for the synced tables.
    `positions`: the source's next values (source sequence label → value), for RESTART."""
    feeds = [f for f in source.feeds_of(table_keys)
             if f.table_key in target.tables and f.column in target.tables[f.table_key].columns]
    with conn.cursor() as cur:
        aligner = _Aligner(cur, source, target, positions)
        for f in feeds:  # identity columns first: an identity brings its own sequence
            if f.kind == "identity":
                aligner.identity(f)
        for f in feeds:
            if f.kind != "identity":
                aligner.plain(f, feeds)
    return aligner.changes


def _further(a: int, b: int, increment: int) -> int:
    return max(a, b) if increment > 0 else min(a, b)


def target_positions(source: Catalog, target_conn, table_keys: set[TableKey],
                     positions: dict[str, int | None]) -> dict[str, int]:
    """The engine's `positions` on the target: target sequence label → the source's next value,
    for every column of the synced tables a source sequence feeds. Read after align_sequences, so
    the target sequence is the one now feeding that column (its name may differ from prod's)."""
    now = {(f.table_key, f.column): f.sequence for f in read_catalog(target_conn).feeds}
    out: dict[str, int] = {}
    for f in source.feeds_of(table_keys):
        tseq, value = now.get((f.table_key, f.column)), positions.get(f.sequence.label)
        if tseq is None or value is None:
            continue
        # Several source sequences could feed one target sequence; the furthest clears all.
        prev = out.get(tseq.label)
        out[tseq.label] = value if prev is None else _further(prev, value, f.sequence.increment)
    return out
