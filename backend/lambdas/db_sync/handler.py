"""The db_sync Lambda: the event parsed (DbSyncEvent) → one service function (run_sync, or
check_target) → its JSON-ready result.

Events:
  - the EventBridge schedule (any event without an "action", e.g. {"source": "aws.events", …}),
    or {"action": "sync", "tables": [...], "dry_run": false}: run the sync;
  - {"action": "check-sequences"}: only check the target's sequences, against the source's;
    returns {"ok": bool, "problems": [...], "unverifiable": [...]} (CI gates on it after a deploy);
  - {"action": "verify", "tables": [...]}: prove staging is what prod masks to (dbsync.verify);
    returns its report, {"ok": bool, "findings": [...], …}: findings are an answer, not a failure
    (the VerifyFindings and PersonalDataLeaks metrics and their alarms); it raises only when it
    could not verify. The template schedules it weekly; CI gates on it after a deploy.

The settings are dbsync.settings' (SOURCE_*, TARGET_*, SYNC_*, LOCK_TIMEOUT), as for `db-sync sync`.

A failed sync raises (one-line message; an unexpected exception, a bug, is logged with its
traceback): the invocation then counts as an error, so the
function's Errors alarm and the asynchronous on-failure destination fire. Returning an error
dict would look like success to both. The target is unchanged whenever it raises.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from dbsync.errors import DbSyncError
from dbsync.metrics import publish_emf, recorded, verify_values
from dbsync.results import SequenceCheck, SyncReport
from dbsync.sequences import check_report, reset_sequences
from dbsync.settings import SharedSettings, SourceDatabaseSettings, SyncSettings, TargetDatabaseSettings
from dbsync.sync import sync_databases
from dbsync.sync.budget import Deadline
from dbsync.verify import verify_databases
from dbsync.verify.report import VerifyReport, line

__all__ = ["DbSyncEvent", "lambda_handler", "reset_sequences", "sync_databases"]

logger = Logger(service="db_sync")

ACTIONS = ("sync", "check-sequences", "verify")


class DbSyncEvent(BaseModel):
    """The invocation's event. Keys it does not know are ignored (the schedule's `source`,
    `detail-type`, …); each refusal is one line naming the key."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    action: Literal["sync", "check-sequences", "verify"] = "sync"
    tables: list[str] | None = None  # schema.table or table; None: every table
    dry_run: bool = False

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError("the event must be a JSON object")
        return data

    @field_validator("action", mode="before")
    @classmethod
    def _known_action(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in ACTIONS:
            raise ValueError(f"unknown action {value!r}: expected one of {', '.join(ACTIONS)}")
        return value

    @field_validator("tables", mode="before")
    @classmethod
    def _table_names(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, list) or not all(isinstance(t, str) for t in value)):
            raise ValueError('"tables" must be a list of table names')
        if value == []:
            # An empty list is more likely a bug in the caller than a request to copy everything.
            raise ValueError('"tables" is empty: omit it to sync every table')
        return value

    @field_validator("dry_run", mode="before")
    @classmethod
    def _strict_bool(cls, value: Any) -> Any:
        if not isinstance(value, bool):  # pydantic alone would take "false" or 0 for False
            raise ValueError('"dry_run" must be true or false')
        return value


def parse_event(event: Any) -> DbSyncEvent:
    """The event as a DbSyncEvent, or a DbSyncError whose one line says what is wrong."""
    try:
        return DbSyncEvent.model_validate(event)
    except ValidationError as exc:
        raise DbSyncError("; ".join(e["msg"].removeprefix("Value error, ")
                                    for e in exc.errors(include_url=False, include_context=False))) from None


def _log_progress(event: dict) -> None:
    if event.get("event") == "table_done":
        seconds = event["seconds"] or 1e-9
        logger.info("table copied", extra={"table": event["table"], "rows": event["rows"], "bytes": event["bytes"],
                                           "seconds": event["seconds"],
                                           "mb_per_s": round(event["bytes"] / 2**20 / seconds, 2)})


def check_target(_request: DbSyncEvent, _context: LambdaContext) -> SequenceCheck:
    """The check-sequences action: {"ok": bool, "problems": [...], "unverifiable": [...]} for the
    target, judged against the source (prod decides which columns must be fed) when SOURCE_* is
    set, as it is for the sync; read only on both."""
    target = TargetDatabaseSettings.load().required()
    source_settings = SourceDatabaseSettings.load()
    lock_timeout = SharedSettings.load().lock_timeout
    source = source_settings.connect(lock_timeout=lock_timeout) if source_settings.configured else None
    try:
        conn = target.connect(lock_timeout=lock_timeout)
        try:
            result = check_report(conn, source=source)
        finally:
            conn.close()
    finally:
        if source is not None:
            source.close()
    logger.info("sequence check finished", extra={
        "target": target.describe(), "source": source_settings.describe() if source is not None else None,
        "ok": result["ok"], "problems": len(result["problems"]), "unverifiable": len(result["unverifiable"])})
    return result


# What the handler keeps back from its invocation's remaining time for the rollback, the log
# lines and the metrics after a sync that stopped at its budget: never a Lambda timeout.
MARGIN_SHARE, MARGIN_MIN_S, MARGIN_MAX_S = 0.05, 2.0, 20.0


# When the invocation began (time.perf_counter()): the one deadline of its run counts from here.
_started: ContextVar[float] = ContextVar("dbsync_invocation_started")


def sync_deadline(context: LambdaContext, settings: SyncSettings | None = None) -> Deadline:
    """The invocation's one deadline: its remaining time less a margin, and no more than
    SYNC_MAX_SECONDS after the handler was entered when that is set."""
    configured = (settings or SyncSettings.load()).sync_max_seconds
    now = time.perf_counter()
    started = _started.get(now)
    left = context.get_remaining_time_in_millis() / 1000
    budget = max(0.001, left - min(MARGIN_MAX_S, max(MARGIN_MIN_S, MARGIN_SHARE * left)))
    if configured is not None and started + configured < now + budget:
        return Deadline(started + configured, configured)
    return Deadline(now + budget, budget)


def run_sync(request: DbSyncEvent, context: LambdaContext) -> SyncReport:
    """The sync action: the report of dbsync.sync.sync_databases."""
    source = SourceDatabaseSettings.load().required()
    target = TargetDatabaseSettings.load().required()
    settings = SyncSettings.load()
    logger.info("sync starting", extra={"source": source.describe(), "target": target.describe(),
                                        "tables": request.tables, "dry_run": request.dry_run})
    rules = settings.rules()
    if rules is None:
        logger.warning("no masking rules (SYNC_RULES_FILE): rows travel unmasked")
    result = sync_databases(source, target, tables=request.tables, dry_run=request.dry_run,
                            progress=_log_progress, rules=rules, masking_key=settings.masking_key(),
                            deadline=sync_deadline(context, settings), incremental=settings.incremental,
                            allowlist=settings.sync_target_allowlist, lock_timeout=settings.lock_timeout,
                            schema_drift=settings.sync_schema_drift, delete_orphans=settings.sync_delete_orphans,
                            exclude=settings.exclude(), verify=settings.sync_verify)
    for warning in result.get("warnings", []):
        logger.warning("sync warning", extra={"warning": warning})
    if rules is None and result.get("masking", {}).get("uncovered"):
        logger.warning("personal-data columns copied unmasked", extra={"columns": result["masking"]["uncovered"]})
    logger.info("sync finished", extra={
        "tables": len(result["tables"]), "rows": sum(t.get("rows", 0) for t in result["tables"]),
        "sequences_reset": len(result["sequences_reset"]), "timings": result["timings"],
        "dry_run": result["dry_run"]})
    return result


def with_metrics(service):
    """The sync's CloudWatch metrics (dbsync.metrics), one EMF line on stdout after the run; a
    failed refresh reports SyncSucceeded=0 before its error propagates."""
    def unpublished(exc: Exception) -> None:
        logger.warning("metrics not published", extra={"error": repr(exc)})

    def run(request: DbSyncEvent, context: LambdaContext) -> SyncReport:
        with recorded(publish_emf, tables=request.tables, dry_run=request.dry_run, on_error=unpublished) as record:
            result = service(request, context)
            record(result)
        return result
    return run


def run_verify(request: DbSyncEvent, context: LambdaContext) -> VerifyReport:
    """The verify action: dbsync.verify's report, under the invocation's one deadline; its
    metrics published (EMF) whatever it found."""
    source = SourceDatabaseSettings.load().required()
    target = TargetDatabaseSettings.load().required()
    settings = SyncSettings.load()
    report = verify_databases(source, target, rules=settings.rules(), masking_key=settings.masking_key(),
                              tables=request.tables, allowlist=settings.sync_target_allowlist,
                              lock_timeout=settings.lock_timeout, deadline=sync_deadline(context, settings))
    try:
        publish_emf(verify_values(report))
    except Exception as exc:  # noqa: BLE001 - metrics never change the verdict
        logger.warning("metrics not published", extra={"error": repr(exc)})
    for finding in report["findings"]:
        logger.warning("verify finding", extra={"finding": line(finding)})
    logger.info("verify finished", extra={"ok": report["ok"], "findings": len(report["findings"]),
                                          "notes": report["notes"], "timings": report["timings"]})
    return report


SERVICES = {"sync": with_metrics(run_sync), "check-sequences": check_target, "verify": run_verify}


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    _started.set(time.perf_counter())
    try:
        request = parse_event(event)
        logger.append_keys(action=request.action)
        return SERVICES[request.action](request, context)
    except DbSyncError as exc:
        # One line, no traceback, no password (DbSyncError messages never carry one); the cause's
        # SQLSTATE, side and phase as fields of the log line.
        logger.error("db_sync failed", extra={"error": str(exc), **{k: v for k, v in exc.as_dict().items()
                                                                     if k != "message" and v is not None}})
        raise DbSyncError(str(exc)) from None
    except Exception:
        # A bug, not a problem of the databases or the settings: its traceback goes to the log.
        logger.exception("db_sync failed: an unexpected error (a bug in db-sync)")
        raise
