"""The sequence engine: plan and apply repairs so that the next INSERT on every table succeeds
and lands right after the data.

The plan reads the catalogs (dbsync.catalog), the data's extremes and each sequence's state in a
few set-based queries (chunked so no transaction holds more locks than the lock table allows),
then decides per sequence. Rules:
- the next value clears every column the sequence feeds (shared sequences), including rows in
  partitions and inheritance children (a max() over a parent covers them); integer, numeric and
  float columns count (NaN, ±Infinity and values beyond bigint never meet a sequence value);
- ascending sequences go past the largest value, descending ones below the smallest; an empty
  table's sequence goes to START; START, MINVALUE, MAXVALUE and INCREMENT are honoured, and a value
  beyond the bounds (or the column type) is an error for that sequence, found while planning;
- standalone, a sequence already ahead of its data is left where it is (values may have been handed
  out) unless exact=True; `positions` (the sync: the source's next values) replaces START as the
  floor, and with exact=True the sequence mirrors it, floored at the data. A column with no order
  to compare (`'X' || nextval('s')`) is moved only to a position it is given;
- a column is fed by a default, an identity, a sequence it owns, or a BEFORE INSERT trigger that
  calls nextval() (dbsync.catalog.sequences); a fed column stays fed the way it is: a trigger-fed
  column is never given a default, and its sequence is positioned like any other;
- standalone, a column that owns a sequence but has neither default nor trigger gets its default
  back (restore_defaults; the sync passes False: prod decides); an integer primary key nothing
  feeds gets a serial-style sequence when create_missing is True, or None in the old sync's
  signature (such keys outnumber the fed columns); otherwise None reports it as `unverifiable`;
- a wrapped CYCLE sequence keeps its position unless that value is taken; row-level security is
  off for the reads, so a policy that would hide rows is an error, never a short max().
check_sequences flags less than reset_sequences would change: only what fails or collides (see
dbsync.sequences.check).

Modules: `session` (the connection's two modes, chunked reads), `plan` (reads and decisions),
`apply` (DDL and moves), `check` (the CI gate), `names` (serial sequence names).
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg2

from dbsync.catalog import TableKey
from dbsync.errors import DbSyncError
from dbsync.results import ACTIONS, SequenceResult
from dbsync.sequences.apply import apply
from dbsync.sequences.check import check_report, check_sequences
from dbsync.sequences.names import serial_name
from dbsync.sequences.plan import EnginePlan, plan, unverifiable_result
from dbsync.sequences.session import EngineSession

__all__ = ["ACTIONS", "check_report", "check_sequences", "plan_sequences", "reset_sequences",
           "serial_name"]


def _results(planned: EnginePlan) -> list[SequenceResult]:
    out = [it.result() for sp in planned.sequences for it in sp.items]
    out += [unverifiable_result(f) for f in planned.unverifiable]
    out.sort(key=lambda d: (d["schema"], d["table"], d["column"]))
    return out


def plan_sequences(conn, *, schemas: list[str] | None = None, tables: Iterable[TableKey] | None = None,
                   exact: bool = False, create_missing: bool | None = None,
                   positions: dict[str, int] | None = None, in_transaction: bool | None = None,
                   restore_defaults: bool = True, lock_timeout: str | None = None) -> list[SequenceResult]:
    """What reset_sequences would do, changing nothing."""
    return reset_sequences(conn, dry_run=True, schemas=schemas, tables=tables, exact=exact,
                           create_missing=create_missing, positions=positions, in_transaction=in_transaction,
                           restore_defaults=restore_defaults, lock_timeout=lock_timeout)


def reset_sequences(conn, *, dry_run: bool = False, schemas: list[str] | None = None,
                    tables: Iterable[TableKey] | None = None, exact: bool = False,
                    create_missing: bool | None = None, positions: dict[str, int] | None = None,
                    in_transaction: bool | None = None, restore_defaults: bool = True,
                    lock_timeout: str | None = None) -> list[SequenceResult]:
    """Repair every sequence-fed column; one result per column (see the module docstring).

    `schemas` / `tables` ((schema, table) pairs) limit the work to the sequences feeding those
    tables (each with every column it feeds). in_transaction=None detects the mode: a connection
    inside a transaction is the caller's transaction (nothing is committed, sequences move
    transactionally); an idle one is standalone. create_missing and restore_defaults: see the
    module docstring. `lock_timeout`: how long to wait for a busy table (None: the connection's
    own, or 10s where it would wait forever).
    """
    session = EngineSession(conn, in_transaction, lock_timeout)
    try:
        planned = plan(session, schemas=schemas, tables=None if tables is None else set(tables), exact=exact,
                       create_missing=create_missing, positions=positions, restore_defaults=restore_defaults)
        if not dry_run:
            apply(session, planned.sequences)
        elif not session.in_transaction:
            conn.rollback()
        return _results(planned)
    except psycopg2.Error as exc:
        if not session.in_transaction:
            conn.rollback()
        raise DbSyncError(f"sequence repair failed: {session.explain(exc)}", sqlstate=exc.pgcode) from exc
    finally:
        session.close()

