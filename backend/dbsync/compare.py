"""The two catalogs compared: what would lose data or fail the load, and where binary COPY is safe.

The target's tables already exist (its migrations made them, or the old sync did); the sync never
creates tables, so it refuses on any difference that would lose data before writing anything.
"""

from __future__ import annotations

from dbsync.catalog import Table
from dbsync.errors import shown_name

_INT_RANK = {"smallint": 1, "integer": 2, "bigint": 3}
# OIDs below this are the server's own (built-in) objects, identical in every database.
FIRST_USER_OID = 16384


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
        name = f"{src.label}.{shown_name(col.name)}"
        if other is None:
            problems.append(f"column {name} is missing on the target")
        elif bool(col.generated) != bool(other.generated):
            problems.append(f"column {name} is generated on the {'source' if col.generated else 'target'} only")
        elif not col.generated and not type_compatible(col.type, other.type):
            problems.append(f"column {name} is {col.type} on the source but {other.type} on the target")
    for other in tgt.columns.values():
        if (other.name not in src.columns and other.not_null and other.default is None
                and not other.identity and not other.generated):
            problems.append(f"column {src.label}.{shown_name(other.name)} exists only on the target and is"
                            " NOT NULL without a default")
    return problems


def binary_safe(src: Table, tgt: Table, columns: list[str]) -> bool:
    """Binary COPY only where both sides have identical built-in types (user type OIDs differ
    between databases, and binary arrays/records carry them)."""
    for name in columns:
        a, b = src.columns[name], tgt.columns[name]
        if a.type != b.type or a.type_oid != b.type_oid or a.type_oid >= FIRST_USER_OID:
            return False
    return True
