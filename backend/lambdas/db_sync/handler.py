"""The db_sync Lambda: event → sync_databases() (or the sequence check) → result.

Events:
  - the EventBridge schedule (any event without an "action", e.g. {"source": "aws.events", …}),
    or {"action": "sync", "tables": [...], "dry_run": false}: run the sync;
  - {"action": "check-sequences"}: only check the target's sequences; returns
    {"ok": bool, "problems": [...]} (CI gates on it after a deploy).

A failed sync raises (one-line message): the invocation then counts as an error, so the
function's Errors alarm and the asynchronous on-failure destination fire. Returning an error
dict would look like success to both. The target is unchanged whenever it raises.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

from dbsync.config import (
    endpoint_from_env,
    endpoints_from_env,
    incremental_from_env,
    masking_key_from_env,
    max_seconds_from_env,
    rules_from_env,
)
from dbsync.errors import DbSyncError
from dbsync.sequences import check_sequences, reset_sequences
from dbsync.sync import sync_databases

__all__ = ["lambda_handler", "reset_sequences", "sync_databases"]

logger = Logger(service="db_sync")

_ACTIONS = ("sync", "check-sequences")


def _parse(event) -> dict:
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise DbSyncError("the event must be a JSON object")
    action = event.get("action", "sync")
    if action not in _ACTIONS:
        raise DbSyncError(f"unknown action {action!r}: expected one of {', '.join(_ACTIONS)}")
    tables = event.get("tables")
    if tables is not None and (not isinstance(tables, list) or not all(isinstance(t, str) for t in tables)):
        raise DbSyncError("\"tables\" must be a list of table names")
    if tables == []:
        # An empty list is more likely a bug in the caller than a request to copy everything.
        raise DbSyncError("\"tables\" is empty: omit it to sync every table")
    dry_run = event.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise DbSyncError("\"dry_run\" must be true or false")
    return {"action": action, "tables": tables, "dry_run": dry_run}


def _log_progress(event: dict) -> None:
    if event.get("event") == "table_done":
        seconds = event["seconds"] or 1e-9
        logger.info("table copied", extra={"table": event["table"], "rows": event["rows"], "bytes": event["bytes"],
                                           "seconds": event["seconds"],
                                           "mb_per_s": round(event["bytes"] / 2**20 / seconds, 2)})


def _check(_request: dict) -> dict:
    target = endpoint_from_env("target")
    conn = target.connect()
    try:
        problems = check_sequences(conn)
    finally:
        conn.close()
    result = {"ok": not problems, "problems": problems}
    logger.info("sequence check finished", extra={"target": target.describe(), "ok": result["ok"],
                                                   "problems": len(problems)})
    return result


# What the handler keeps back from its invocation's remaining time for the rollback, the log
# lines and the metrics after a sync that stopped at its budget: never a Lambda timeout.
MARGIN_SHARE, MARGIN_MIN_S, MARGIN_MAX_S = 0.05, 2.0, 20.0


def sync_budget(context) -> float | None:
    """The sync's time budget: the invocation's remaining time less a margin, and no more than
    SYNC_MAX_SECONDS when that is set."""
    configured = max_seconds_from_env()
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_ms is None:
        return configured
    left = remaining_ms() / 1000
    budget = max(0.001, left - min(MARGIN_MAX_S, max(MARGIN_MIN_S, MARGIN_SHARE * left)))
    return budget if configured is None else min(budget, configured)


def _sync(request: dict, context=None) -> dict:
    source, target = endpoints_from_env()
    logger.info("sync starting", extra={"source": source.describe(), "target": target.describe(),
                                        "tables": request["tables"], "dry_run": request["dry_run"]})
    rules = rules_from_env()
    if rules is None:
        logger.warning("no masking rules (SYNC_RULES_FILE): rows travel unmasked")
    result = sync_databases(source, target, tables=request["tables"], dry_run=request["dry_run"],
                            progress=_log_progress, rules=rules, masking_key=masking_key_from_env(),
                            max_seconds=sync_budget(context), incremental=incremental_from_env())
    if rules is None and result.get("masking", {}).get("uncovered"):
        logger.warning("personal-data columns copied unmasked", extra={"columns": result["masking"]["uncovered"]})
    logger.info("sync finished", extra={
        "tables": len(result["tables"]), "rows": sum(t.get("rows", 0) for t in result["tables"]),
        "sequences_reset": len(result["sequences_reset"]), "timings": result["timings"],
        "dry_run": result["dry_run"]})
    return result


def lambda_handler(event, context):
    logger.clear_state()
    # Not inject_lambda_context: it requires a full context object; tests and manual runs pass None.
    logger.append_keys(function_request_id=getattr(context, "aws_request_id", None))
    try:
        request = _parse(event)
        logger.append_keys(action=request["action"])
        if request["action"] == "check-sequences":
            return _check(request)
        return _sync(request, context)
    except DbSyncError as exc:
        # One line, no traceback, no password (DbSyncError messages never carry one).
        logger.error("db_sync failed", extra={"error": str(exc)})
        raise DbSyncError(str(exc)) from None
