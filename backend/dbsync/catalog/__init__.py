"""The catalog layer: every pg_catalog read of the engine, the sync and the guards.

Readers only read. The models are in `models`; the shared SQL fragments and the way catalog
queries are run in `query`; the readers by subject in `relations` (tables, columns, the whole
picture of a database), `sequences` (sequences, the columns they feed, their positions),
`constraints` (triggers, foreign keys, indexes) and `privileges` (grants, ownership,
row-level security, the lock table).
"""

from dbsync.catalog.models import (
    SEQUENCE_COMPARABLE_TYPES,
    Catalog,
    Column,
    Feed,
    MissingKey,
    Sequence,
    Table,
    TableKey,
    qualified,
)
from dbsync.catalog.relations import read_catalog

__all__ = ["SEQUENCE_COMPARABLE_TYPES", "Catalog", "Column", "Feed", "MissingKey", "Sequence", "Table", "TableKey",
           "qualified", "read_catalog"]
