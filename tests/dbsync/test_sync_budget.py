"""The time budget on a real PostgreSQL: a sync that cannot finish stops itself within it, rolled
back, with one line naming the budget, and leaves no session or lock behind on either side."""

from __future__ import annotations

import json
import time

import pytest

from dbsync.cli import main
from dbsync.errors import DbSyncError
from dbsync.sync import sync_databases
from tests.support.db import execute, query
from tests.support.slow import SLOW


def scalar(dsn: str, text: str):
    return query(dsn, text)[0][0]



def leftovers(dsn: str) -> int:
    """db-sync sessions (and their locks) still on this database."""
    return scalar(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND application_name = 'db-sync'")


def test_a_sync_past_its_budget_stops_inside_the_copy_rolled_back(slow_pair):
    src, tgt, rules = slow_pair
    started = time.perf_counter()
    with pytest.raises(DbSyncError) as caught:
        sync_databases(src, tgt, rules=rules, max_seconds=1.2)
    took = time.perf_counter() - started
    message = str(caught.value)
    assert "time budget of 1.2 s while copying public.notes" in message and "0 of 1 tables copied" in message
    assert "--max-seconds" in message and "--table" in message and "Fargate" in message
    assert took < 1.2
    assert scalar(tgt, "SELECT string_agg(body, ',') FROM notes") == "staging before"
    time.sleep(0.2)  # a cancelled backend takes a moment to go
    assert leftovers(src) == 0 and leftovers(tgt) == 0


def test_without_the_slowness_the_same_budget_is_enough(make_db):
    src, tgt = make_db("fast_src"), make_db("fast_tgt")
    execute(src, *SLOW[1:])
    execute(tgt, SLOW[1])
    result = sync_databases(src, tgt, max_seconds=30)
    assert result["tables"][0]["rows"] == 300


def test_a_budget_too_small_for_what_must_follow_stops_before_writing(slow_pair):
    src, tgt, rules = slow_pair
    with pytest.raises(DbSyncError, match=r"time budget of 0\.5 s while connecting"):
        sync_databases(src, tgt, rules=rules, max_seconds=0.5)


def test_cli_max_seconds_and_the_dry_run_estimate(slow_pair, monkeypatch, capsys):
    src, tgt, _ = slow_pair
    assert main(["sync", "--source", src, "--target", tgt, "--dry-run", "--max-seconds", "600"]) == 0
    out = capsys.readouterr().out
    assert "about" in out and "MB/s" in out and "fits the" in out and "s left of the budget of 600 s" in out
    # Exit 3: a dry run whose estimate does not fit what is left of its budget.
    assert main(["sync", "--source", src, "--target", tgt, "--dry-run", "--max-seconds", "0.9"]) == 3
    assert "does NOT fit the" in capsys.readouterr().out
    # Planning outlasts a tiny budget: the dry run still finishes its estimate, and says it does not fit.
    assert main(["sync", "--source", src, "--target", tgt, "--dry-run", "--max-seconds", "0.001", "--json"]) == 3
    estimate = json.loads(capsys.readouterr().out)["estimate"]
    assert estimate["fits"] is False and estimate["seconds_left"] == 0 and estimate["seconds"] > 0
    monkeypatch.setenv("SYNC_MAX_SECONDS", "soon")
    assert main(["sync", "--source", src, "--target", tgt]) == 2
    assert "SYNC_MAX_SECONDS='soon' is not a number" in capsys.readouterr().err


def test_the_lambda_stops_with_a_few_seconds_left_on_its_clock(slow_pair, monkeypatch):
    """The budget is the invocation's remaining time less a margin: DbSyncError, never a timeout."""
    from dbsync.settings import SyncSettings
    from lambdas.db_sync import handler
    from tests.support.lambda_context import FakeLambdaContext

    src, tgt, rules = slow_pair
    monkeypatch.setenv("SOURCE_DATABASE_URL", src)
    monkeypatch.setenv("TARGET_DATABASE_URL", tgt)
    monkeypatch.setattr(SyncSettings, "rules", lambda self: rules)

    context = FakeLambdaContext(remaining_seconds=3.3)  # 3.3 s left: budget 1.3 s after the 2 s margin
    with pytest.raises(DbSyncError, match="time budget of 1.3"):
        handler.lambda_handler({}, context)
    assert context.get_remaining_time_in_millis() > 1500
    assert scalar(tgt, "SELECT string_agg(body, ',') FROM notes") == "staging before"


def test_a_fallback_to_a_full_sync_works_to_the_same_deadline(make_db, monkeypatch):
    """An incremental sync whose delta conflicts runs again in full: within what is left of the one
    budget, not a budget of its own (the Lambda would be killed mid-sync)."""
    from dbsync.sync import delta
    from dbsync.sync.budget import BudgetExceeded
    from dbsync.sync.run import SyncRun

    src, tgt = make_db("fallback_src"), make_db("fallback_tgt")
    execute(src, *SLOW[1:])
    execute(tgt, SLOW[1], "INSERT INTO notes VALUES (1, 'staging before')")
    real_step = SyncRun.step

    def conflicting_step(run, phase):
        if phase.name == "incremental" and run.options.incremental:
            time.sleep(1.0)  # a slow comparison, then a conflict: about 0.5 s of the budget left
            raise delta.DeltaConflict("a unique value moved between rows")
        real_step(run, phase)

    monkeypatch.setattr(SyncRun, "step", conflicting_step)
    started = time.perf_counter()
    with pytest.raises(BudgetExceeded, match=r"time budget of 1\.5 s"):
        sync_databases(src, tgt, max_seconds=1.5, incremental=True)
    assert time.perf_counter() - started < 1.5
    assert scalar(tgt, "SELECT string_agg(body, ',') FROM notes") == "staging before"
    # The same sync with a budget that leaves the fallback room ends in full.
    result = sync_databases(src, tgt, max_seconds=30, incremental=True)
    assert "synced again in full" in result["fallback"] and result["tables"][0]["rows"] == 300
