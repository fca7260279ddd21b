"""Fixtures of the engine tests: an environment the outer shell cannot leak into."""

from __future__ import annotations

import pytest

from benchmarks.vanish import case, run_cases, unavailable
from dbsync.masking.rules import ColumnRule, Rules, TableRule
from tests.support.db import execute
from tests.support.env import SYNC_SETTINGS
from tests.support.slow import SLOW
from tests.support.vanish import FAST_LIBPQ, FAST_SERVER, SCENARIOS, WINDOW


@pytest.fixture
def no_allowlist(monkeypatch):
    """The tests' targets are local (socket or loopback): allowed when SYNC_TARGET_ALLOWLIST is
    unset; and LOCK_TIMEOUT at its default."""
    monkeypatch.delenv("SYNC_TARGET_ALLOWLIST", raising=False)
    monkeypatch.delenv("LOCK_TIMEOUT", raising=False)


@pytest.fixture
def no_sync_env(monkeypatch):
    """None of the sync's variables (its databases, allow-list, lock timeout) from the outer environment."""
    for var in SYNC_SETTINGS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cloudwatch(monkeypatch):
    """CloudWatch faked by moto; SYNC_METRICS=cloudwatch as the task definition sets it."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    for var in ("POWERTOOLS_METRICS_NAMESPACE", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SYNC_METRICS", "cloudwatch")
    with mock_aws():
        import boto3

        yield boto3.client("cloudwatch", region_name="eu-west-1")


@pytest.fixture
def slow_pair(make_db):
    src, tgt = make_db("slow_src"), make_db("slow_tgt")
    execute(src, *SLOW)
    execute(tgt, *SLOW[:2], "INSERT INTO notes VALUES (1, 'staging before')")  # the function too: see slow.py
    rules = Rules({"public.notes": TableRule(columns={"body": ColumnRule("sql", sql="slow(body)")})})
    return src, tgt, rules


@pytest.fixture(scope="module")
def vanished():
    why = unavailable()
    if why:
        pytest.skip(f"cannot build a private network namespace here: {why}")
    cases = [case(f"{s}-fast", s, "fast", FAST_LIBPQ, FAST_SERVER) for s in SCENARIOS]
    cases += [case(f"{s}-none", s, "none") for s in SCENARIOS]
    report = run_cases(cases, window=WINDOW, quiet=True)
    if "unavailable" in report:
        pytest.skip(report["unavailable"])
    assert "error" not in report, f"{report['error']}\n{report.get('stderr', '')}"
    return {r["label"]: r for r in report["results"]}
