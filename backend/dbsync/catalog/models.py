"""One model per catalog object the engine and the sync reason about.

Everything here is read from pg_catalog by the readers of this package and never written back:
the models carry names, definitions and the current role's privileges, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql

TableKey = tuple[str, str]  # (schema, name), unquoted

# Base types (pg_type.typname) whose values can be compared with a sequence value, and the largest
# value each holds (None: wider than any sequence). A domain counts as its ultimate base type.
# Float columns count like numeric: NaN and ±Infinity never meet a sequence value, and neither
# does anything beyond bigint.
SEQUENCE_COMPARABLE_TYPES: dict[str, int | None] = {
    "int2": 2**15 - 1, "int4": 2**31 - 1, "int8": 2**63 - 1,
    "numeric": None, "float4": None, "float8": None,
}
# Base types whose extremes may hold NaN, ±Infinity or values beyond bigint.
UNBOUNDED_TYPES = frozenset(t for t, limit in SEQUENCE_COMPARABLE_TYPES.items() if limit is None)


def qualified(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


class _Relation:
    """What a table and a sequence share: a schema-qualified name."""

    schema: str
    name: str

    @property
    def key(self) -> TableKey:
        return (self.schema, self.name)

    @property
    def ident(self) -> sql.Composed:
        return qualified(self.schema, self.name)


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
class Table(_Relation):
    oid: int
    schema: str
    name: str
    relkind: str  # 'r' plain, 'p' partitioned
    is_partition: bool
    owner: str
    label: str  # schema.name quoted as PostgreSQL quotes it (quote_ident)
    columns: dict[str, Column] = field(default_factory=dict)


@dataclass
class Sequence(_Relation):
    oid: int  # 0 for one a plan would create
    schema: str
    name: str
    label: str  # quoted as PostgreSQL would: public.books_id_seq, "My Schema"."Odd seq" — the engine's key
    type: str  # smallint | integer | bigint
    start: int
    increment: int
    min: int
    max: int
    cache: int
    cycle: bool
    owner: str | None
    can_read: bool  # SELECT: its position can be read
    can_update: bool  # UPDATE: setval()
    is_ours: bool  # the current role is (a member of) its owner: ALTER SEQUENCE
    owned_by: tuple[str, str, str] | None = None  # (schema, table, column) of OWNED BY / identity
    identity: bool = False
    exists: bool = True

    def same_definition(self, other: Sequence) -> bool:
        return (self.type, self.start, self.increment, self.min, self.max, self.cache, self.cycle) == (
            other.type, other.start, other.increment, other.min, other.max, other.cache, other.cycle)


@dataclass
class Feed:
    """The link between a sequence and one column it feeds: the column's next INSERT takes its
    value from the sequence (or should: kind `created` is a plan's new sequence)."""

    table_oid: int
    schema: str
    table: str
    table_label: str
    column: str
    attnum: int
    base_type: str  # pg_type.typname of the column's ultimate base type: int4, float8, text, ...
    kind: str  # serial | identity | default (nextval of a sequence it does not own) | created
    has_default: bool  # False: the default is missing (an owned sequence, or a key with none)
    not_null: bool
    can_select: bool
    owns_table: bool
    sequence: Sequence | None = None
    lock_cost: int = 1  # relations a max() over it locks: the table, its children, their indexes
    ancestors: list[int] = field(default_factory=list)  # oids of the tables it inherits from

    @property
    def table_key(self) -> TableKey:
        return (self.schema, self.table)

    @property
    def comparable(self) -> bool:
        """Its data has an order a sequence value can be placed after (`'X' || nextval()` has not)."""
        return self.base_type in SEQUENCE_COMPARABLE_TYPES


@dataclass
class MissingKey:
    """An integer primary key with no default: the plan gives it a serial-style sequence."""

    feed: Feed
    table_owner: str
    can_create: bool
    insert_grantees: list[str | None] = field(default_factory=list)  # None = PUBLIC


@dataclass
class Catalog:
    """What the sync knows of one database: its tables, sequences and who feeds what."""

    tables: dict[TableKey, Table]
    sequences: dict[TableKey, Sequence]
    feeds: list[Feed]
    # (schema, table) of partitions → top-level partitioned table that holds them
    partition_root: dict[TableKey, TableKey]
    keys: dict = field(default_factory=dict)  # TableKey → constraints.Keys

    def fed_columns(self) -> set[tuple[TableKey, str]]:
        return {(f.table_key, f.column) for f in self.feeds}

    def feeds_of(self, table_keys: set[TableKey]) -> list[Feed]:
        return [f for f in self.feeds if f.table_key in table_keys]
