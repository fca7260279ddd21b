"""verify: prove that staging is what prod masks to.

`verify_databases` (`db-sync verify`, the Lambda's `verify` action) runs any time, against a live
prod and a staging people use: nothing is written on prod (a READ ONLY snapshot), temporary
tables on staging only, dropped with its transaction, which is rolled back. It compares every
synced table with prod's rows as the rules mask them (compare), attributes each difference with
the sync's record, checks that no raw personal value sits on staging (personal) and that the gate
passes on staging's catalog, and checks staging's integrity (integrity; sequences through
dbsync.sequences.check_report). `check_synced` is the comparison alone, inside a sync, before its
COMMIT (`sync --verify`): any difference fails the sync.

Modules: `compare` (key-range summaries of masked rows), `personal` (raw values), `integrity`
(foreign keys, NOT VALID, the record), `report` (findings, lines, the JSON shape).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg2

from dbsync import interrupt, safety
from dbsync.catalog import Catalog, read_catalog
from dbsync.connect import DEFAULT_LOCK_TIMEOUT
from dbsync.errors import DbSyncError, pg_message, sqlstate
from dbsync.masking import binding as masking
from dbsync.masking.key import MaskingKey
from dbsync.masking.rules import Rules
from dbsync.sequences import check_report
from dbsync.sessions import abandon, close, describe, open_session
from dbsync.sync import record
from dbsync.sync.budget import Budget, BudgetExceeded, Deadline
from dbsync.sync.link import Link
from dbsync.sync.units import Unit, plan_units
from dbsync.verify import compare, integrity, personal
from dbsync.verify.report import Finding, VerifyReport

__all__ = ["VerifyFailed", "check_synced", "verify_databases"]


class VerifyFailed(DbSyncError):
    """`sync --verify` found staging different from prod as the rules mask it: the sync rolls back."""


def check_synced(link: Link, units: list[Unit], keys: dict, before_each=lambda: None) -> dict:
    """The comparison inside a sync (its snapshot, its transaction and locks): {tables, rows,
    key_ranges}; VerifyFailed naming each differing table, a few of its ranges and keys."""
    planned = []
    for i, unit in enumerate(units):
        before_each(unit)
        planned.append(compare.plan_table(link, unit, compare.primary_key(unit, keys), None, i))
    found = compare.compare_tables(link, planned)
    differing = [t for t in found if t.differ]
    if differing:
        raise VerifyFailed("the verify found staging different from prod as the rules mask it, so nothing was"
                           " committed: " + "; ".join(_described(t) for t in differing[:5]))
    return {"tables": len(units), "rows": sum(t.source_rows for t in found),
            "key_ranges": sum(t.ranges for t in found)}


def _described(found: compare.TableCompared) -> str:
    keys = [k for ks in found.keys.values() for k in ks][:compare.SAMPLE_KEYS]
    return (f"{found.table}: {found.source_rows} row(s) on prod, {found.target_rows} on staging,"
            f" {found.differing_range_count} key range(s) differ ({', '.join(found.differing_ranges)})"
            + (f", keys {'; '.join(keys)}" if keys else ""))


@dataclass(repr=False)  # its endpoints hold passwords, the key is the masking key
class _Run:
    link: Link
    budget: Budget
    rules: Rules | None
    key: MaskingKey | None
    strict: bool
    doing: str = "connecting"
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    usable: dict[str, record.LastSync] = field(default_factory=dict)  # the record, where it is usable
    compared: dict[str, compare.TableCompared] = field(default_factory=dict)  # by table label
    problems: list[integrity.Problem] = field(default_factory=list)  # staging's, found while prod summarised

    def check_budget(self) -> None:
        """Every statement from here ends before the deadline (statement_timeout)."""
        left = self.budget.remaining()
        if left is None:
            return
        if left <= 0:
            raise BudgetExceeded(f"verify ran out of its time budget ({self.budget.seconds:g} s) while {self.doing};"
                                 " nothing was written")
        timeout = self.budget.statement_timeout_ms(0.0)
        for conn in (self.link.source, self.link.target):
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout),))


def verify_databases(source_endpoint, target_endpoint, *, rules: Rules | None, masking_key: MaskingKey | None,
                     tables: Iterable[str] | None = None, strict: bool = False, allowlist: str | None = None,
                     lock_timeout: str = DEFAULT_LOCK_TIMEOUT, deadline: Deadline | None = None) -> VerifyReport:
    """Verify staging (`target_endpoint`) against prod (`source_endpoint`); the report
    (dbsync.verify.report). `rules` None: the opt-out, personal-data checks skipped. `strict`:
    every difference is a finding, not only the unexplained ones. Raises DbSyncError (exit 2)
    when it cannot verify; nothing is written either way."""
    started = time.perf_counter()
    source = target = None
    run = None
    try:
        target = open_session(target_endpoint, "target", lock_timeout=lock_timeout)
        target.set_session(isolation_level="REPEATABLE READ")
        safety.check_target_allowed(target, allowlist)
        options = " ".join(filter(None, ("-c default_transaction_read_only=on",
                                         masking_key and masking_key.startup_options())))
        source = open_session(source_endpoint, "source", options=options, lock_timeout=lock_timeout)
        source.set_session(isolation_level="REPEATABLE READ", readonly=True)
        safety.check_not_same_database(source, target)
        budget = Budget(deadline)
        run = _Run(Link(source, target, lambda: budget.stop_at(0.0)), budget, rules, masking_key, strict)
        _verify(run, None if tables is None else list(tables))
    except psycopg2.Error as exc:
        doing = run.doing if run else "connecting"
        if interrupt.received() is not None:
            raise interrupt.interrupted(doing, what="nothing was written") from exc
        raise DbSyncError(f"verify failed while {doing}: {pg_message(exc)}; nothing was written",
                          sqlstate=sqlstate(exc)) from exc
    finally:
        abandon(target, source)
        close(target, source)
    run.timings["total"] = round(time.perf_counter() - started, 4)
    return VerifyReport(ok=not run.findings, strict=strict, source=describe(source_endpoint),
                        target=describe(target_endpoint), rules=rules.origin if rules else None, tables=run.tables,
                        findings=run.findings, notes=run.notes, timings=run.timings)


def _step(run: _Run, name: str, doing: str, step, *args) -> None:
    run.doing = doing
    run.check_budget()
    began = time.perf_counter()
    step(run, *args)
    run.timings[name] = round(time.perf_counter() - began, 4)


def _verify(run: _Run, tables: list[str] | None) -> None:
    run.doing = "reading the catalogs"
    source_catalog, target_catalog = read_catalog(run.link.source), read_catalog(run.link.target)
    units, _ = plan_units(source_catalog, target_catalog, tables, binary=True)  # and the drift, the sync's concern
    plan = masking.bind(run.rules, source_catalog, {u.source.key for u in units})
    if plan.keyed and run.key is None:
        raise DbSyncError(f"the {run.rules.origin} uses keyed strategies (email, name, phone, hash) but no masking"
                          " key is set: set SYNC_MASKING_KEY or SYNC_MASKING_KEY_SECRET_ARN")
    for unit in units:
        unit.masked = plan.tables.get(unit.source.key)
    _step(run, "compare", "comparing the tables", _compare, units, target_catalog)
    if run.rules is None:
        run.notes.append("no masking rules (the opt-out): the personal-data checks and the gate were skipped")
    else:
        _step(run, "personal_data", "looking for raw personal data", _personal, units, target_catalog, source_catalog)
    _step(run, "integrity", "checking foreign keys and constraints", _integrity, units, target_catalog)
    # Last: it ends prod's snapshot (check_report rolls the source session back).
    _step(run, "sequences", "checking the sequences", _sequences)


def _compare(run: _Run, units: list[Unit], target_catalog: Catalog) -> None:
    """Every table compared; staging's own integrity checks run while prod summarises."""
    run.usable = usable = record.read_state(run.link.source, run.link.target)
    planned = []
    for i, unit in enumerate(units):
        run.doing = f"planning the comparison of {unit.label}"
        last = usable.get(unit.label)
        if last is not None and last.fingerprint != record.fingerprint(run.link.source, unit, run.key):
            last = None  # masked otherwise than the rules say now: integrity reports it
        planned.append(compare.plan_table(run.link, unit, compare.primary_key(unit, target_catalog.keys), last, i))
    run.doing = "comparing the tables"
    run.check_budget()

    def meanwhile():
        run.doing = "checking foreign keys and constraints"
        with run.link.target.cursor() as cur:
            run.problems = integrity.dangling_references(cur, target_catalog) + integrity.not_valid(cur)
        run.doing = "comparing the tables"

    for found in compare.compare_tables(run.link, planned, meanwhile):
        run.tables.append(found.as_dict())
        run.compared[found.table] = found
        _difference_findings(run, found)
    attributed = sum(p.result.attributed for p in planned)
    if attributed < len(units):
        run.notes.append(f"{len(units) - attributed} table(s) without a usable record of the last sync: their"
                         " differences are not attributed, so each is a finding")
    prod = sum(t["written_on_prod"] for t in run.tables)
    if prod:
        run.notes.append(f"{prod} row(s) differ because prod wrote them since the last sync")


def _difference_findings(run: _Run, found: compare.TableCompared) -> None:
    for who, n in found.differences.items():
        if n and (who == "unexplained" or run.strict):
            since = {"prod": "written on prod since the last sync", "staging": "written on staging since the last sync",
                     "unexplained": "that neither side's writes since the last sync explain"}[who]
            run.findings.append(Finding(
                kind="difference", table=found.table, written_by=who, keys=found.keys.get(who, []),
                detail=f"{n} row(s) differ from prod as the rules mask it, {since}; key ranges:"
                       f" {', '.join(found.differing_ranges)}"))


def _personal(run: _Run, units: list[Unit], target_catalog: Catalog, source_catalog: Catalog) -> None:
    key = personal.run_key(run.link)
    for i, unit in enumerate(units):
        run.doing = f"looking for raw personal data in {unit.label}"
        run.check_budget()
        for leak in personal.check_table(run.link, unit, compare.primary_key(unit, target_catalog.keys), key, i,
                                         run.compared[unit.label]):
            run.findings.append(Finding(kind="personal_data", table=leak.table, column=leak.column, keys=leak.keys,
                                        detail=leak.detail()))
    shared = {k for k in target_catalog.tables if k in source_catalog.tables
              and not target_catalog.tables[k].is_partition}
    try:
        uncovered = masking.bind(run.rules, target_catalog, shared).uncovered
    except DbSyncError as exc:
        run.findings.append(Finding(kind="gate", table=None, detail=f"the rules do not fit staging's catalog: {exc}"))
        return
    on_prod = {(t.label, c) for t in source_catalog.tables.values() for c in t.columns}
    for u in uncovered:
        if (u.table, u.column) not in on_prod:
            continue  # staging's own column: no row of prod reaches it
        run.findings.append(Finding(kind="gate", table=u.table, column=u.column,
                                    detail=f"a personal-data column no rule covers ({u.flagged_by})"))


def _integrity(run: _Run, units: list[Unit], target_catalog: Catalog) -> None:
    problems = run.problems + integrity.record_problems(run.link.source, run.link.target, units, run.key, run.usable)
    for p in problems:
        finding = Finding(kind=p.kind, table=p.table, detail=p.detail)
        if p.keys:
            finding["keys"] = p.keys
        run.findings.append(finding)


def _sequences(run: _Run) -> None:
    report = check_report(run.link.target, source=run.link.source)
    for p in report["problems"]:
        run.findings.append(Finding(kind="sequence", table=f"{p['schema']}.{p['table']}", column=p["column"],
                                    detail=p["problem"]))
