"""SIGINT and SIGTERM at any moment of a sync — inside a COPY, an index rebuild, an incremental
comparison — end it with one line, exit 130 / 143, staging unchanged and no session left on
either server, although each of those moments is a blocking libpq call that a signal alone does
not end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dbsync.masking.rules import load_rules
from dbsync.sync import sync_databases
from tests.support.db import execute, query
from tests.support.paths import ROOT
from tests.support.slow import SLOW

SLOW_RULES = "tables:\n  public.notes:\n    columns:\n      body: {sql: \"slow(body)\"}\n"
# What each moment waits for on the server before the signal is sent: (side, query prefix).
MOMENTS = {
    "copy": ("source", "COPY"),
    "index rebuild": ("target", "CREATE INDEX"),
    "incremental comparison": ("source", None),
}
DOING = {"copy": "copying public.notes", "index rebuild": "rebuilding the indexes of public.notes",
         "incremental comparison": "comparing public.notes"}


def sessions(dsn: str, prefix: str | None = None) -> int:
    """db-sync's sessions on this database (running a statement that starts with `prefix`)."""
    text = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'db-sync'")
    if prefix is not None:
        text += f" AND state = 'active' AND query LIKE '{prefix}%'"
    return query(dsn, text)[0][0]


def busy_in_slow(dsn: str) -> bool:
    return query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND application_name = 'db-sync' AND state = 'active' AND query LIKE '%slow(%'")[0][0] > 0


def wait_for(condition, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "the sync never reached the moment the test waits for"
        time.sleep(0.02)


@pytest.fixture
def slow_dbs(make_db, tmp_path, no_sync_env):
    src, tgt = make_db("sig_src"), make_db("sig_tgt")
    execute(src, *SLOW)
    execute(tgt, *SLOW[:2], "INSERT INTO notes VALUES (1, 'staging before')")
    rules = tmp_path / "slow.yaml"
    rules.write_text(SLOW_RULES)
    return src, tgt, str(rules)


def prepare(moment: str, src: str, tgt: str, rules: str) -> list[str]:
    """The state each moment needs, and the sync's arguments."""
    args = ["sync", "--source", src, "--target", tgt]
    if moment == "copy":
        return [*args, "--rules", rules]
    if moment == "index rebuild":
        execute(tgt, "CREATE INDEX notes_slow ON notes (slow(body))")  # rebuilt after the copy: slow
        return args
    sync_databases(src, tgt, rules=load_rules(rules))  # staging as a masked sync left it
    # Without the sync's record the comparison digests every row through the slow rule.
    execute(tgt, "DROP SCHEMA dbsync CASCADE", "UPDATE notes SET body = 'edited on staging' WHERE id = 7")
    return [*args, "--rules", rules, "--incremental"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_signal_ends_the_sync_rolled_back_with_one_line(slow_dbs, moment, sig):
    src, tgt, rules = slow_dbs
    args = prepare(moment, src, tgt, rules)
    before = query(tgt, "SELECT * FROM notes ORDER BY id")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "dbsync.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        side, prefix = MOMENTS[moment]
        dsn = src if side == "source" else tgt
        wait_for(lambda: sessions(dsn, prefix) > 0 if prefix else busy_in_slow(dsn))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    lines = [line for line in err.splitlines() if not line.startswith("db-sync: warning")]
    assert lines == [f"db-sync: error: interrupted while {DOING[moment]}: rolled back, staging unchanged"]
    assert query(tgt, "SELECT * FROM notes ORDER BY id") == before
    wait_for(lambda: sessions(src) == 0 and sessions(tgt) == 0, seconds=5)


def test_the_cli_runs_from_a_thread_that_cannot_install_signal_handlers(capsys):
    """Only the main thread may install handlers: from another thread db-sync still runs."""
    import threading

    from dbsync.cli import main

    codes = []
    worker = threading.Thread(target=lambda: codes.append(main(["check-rules", "--dsn", "", "--rules", "none"])))
    worker.start()
    worker.join()
    assert codes == [2] and "db-sync: error:" in capsys.readouterr().err
