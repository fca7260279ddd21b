"""`db-sync sync`'s progress: live renderings in a real pseudo-terminal during a slow copy, plain
lines off a terminal, the closing summary, and the planner's estimates they count against."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from dbsync import progress
from dbsync.catalog.relations import row_estimates
from dbsync.cli import main
from tests.support.db import execute
from tests.support.paths import ROOT

pytestmark = pytest.mark.usefixtures("no_sync_env")  # tests/dbsync/conftest.py

SLOW_RULES = "tables:\n  public.notes:\n    columns:\n      body: {sql: slow(body)}\n"


def _rules(tmp_path) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(SLOW_RULES)
    return str(path)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) from util-linux")
def test_live_progress_in_a_pseudo_terminal_then_the_summary(slow_pair, tmp_path):
    src, tgt, _ = slow_pair
    # Rows of 320 bytes: the server sends its COPY in 8 KB bursts, a few every second here.
    execute(src, "INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(301, 400) g",
            "UPDATE notes SET body = repeat(md5(id::text), 10)", "ANALYZE notes")
    command = [sys.executable, "-m", "dbsync.cli", "sync", "--source", src, "--target", tgt,
               "--rules", _rules(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "backend"), COLUMNS="160", LINES="40", TERM="xterm")
    # script(1) runs the command on a new pseudo-terminal and copies all it draws to our stdout.
    proc = subprocess.run(["script", "-qfec", shlex.join(command), "/dev/null"], capture_output=True, env=env,
                          timeout=120, stdin=subprocess.DEVNULL)
    screen = proc.stdout.decode()  # bytes: text mode would turn each redraw's \r into a new line
    assert proc.returncode == 0, screen + proc.stderr.decode()
    summary_at = screen.index("\npublic.notes ")
    drawn = [part for part in re.split(r"[\r\n]", screen[:summary_at]) if "public.notes" in part]
    counts = [int(m.group(1)) for d in drawn if (m := re.search(r"\| (\d+)/400 rows", d))]
    # several renderings while the copy ran, each against the planner's estimate, counting up
    assert len(set(counts)) >= 3, drawn
    assert counts == sorted(counts) and any(0 < n < 400 for n in counts)
    assert any(re.search(r"public\.notes: +\d+%\|", d) and " MB" in d for d in drawn), drawn
    assert any(re.search(r"<00:0\d, [\d.]+ rows/s", d) for d in drawn), drawn  # ETA and rate
    assert "\r" in screen.split("public.notes", 1)[1]  # redrawn in place
    # the summary: one row per table, its mode, rows, masked columns; then the totals
    row = screen[summary_at:].splitlines()[1].split()
    assert row[:3] == ["public.notes", "full", "400"] and "body" in row
    assert "total (1 tables)" in screen and screen.rstrip().splitlines()[-1].startswith("synced 1 table(s)")


def test_plain_lines_off_a_terminal_and_quiet(slow_pair, tmp_path, monkeypatch, capsys):
    src, tgt, _ = slow_pair
    execute(src, "ANALYZE notes")
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.3)
    assert main(["sync", "--source", src, "--target", tgt, "--rules", _rules(tmp_path)]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    copying = [line for line in lines if line.startswith("db-sync: [1/1] public.notes: ")]
    assert len(copying) >= 2, lines
    assert all(re.search(r"\d+ rows of ~300 \(\d+%\), [\d.]+ MB, [\d.]+ MB/s", line) for line in copying), copying
    assert "\r" not in captured.err and "\x1b" not in captured.err  # nothing redrawn off a terminal
    assert "public.notes" not in captured.out  # the summary table is for a terminal
    assert captured.out.startswith("synced 1 table(s)")

    assert main(["sync", "--source", src, "--target", tgt, "--rules", _rules(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_the_summary_table():
    result = {"tables": [
        {"table": "public.users", "rows": 3, "bytes": 3 * 2**20, "seconds": 1.25, "mode": "full"},
        {"table": "public.books", "rows": 10, "bytes": 0, "seconds": 0.5, "mode": "delta", "rows_copied": 2,
         "rows_deleted": 1},
        {"table": "public.audit", "rows": 0, "bytes": 0, "seconds": 0.0, "mode": "full"}],
        "masking": {"masked_columns": ["public.users.email", "public.users.name"], "empty_tables": ["public.audit"]},
        "timings": {"total": 2.0}}
    rows = progress.summary_rows(result)
    assert [(r["table"], r["mode"], r["copied"], r["deleted"], r["masked"]) for r in rows[:3]] == [
        ("public.users", "full", 3, 0, "email, name"), ("public.books", "delta", 2, 1, ""),
        ("public.audit", "skipped", 0, 0, "")]
    total = rows[-1]
    assert (total["copied"], total["deleted"], total["mb"], total["masked"], total["seconds"]) == (
        5, 1, 3.0, "2 columns", 2.0)
    text = progress.summary(result).splitlines()
    assert text[0].split() == ["table", "mode", "rows", "copied", "deleted", "MB", "masked", "columns", "seconds"]
    assert text[2].split() == ["public.users", "full", "3", "0", "3.0", "email,", "name", "1.2"]
    assert text[-1].startswith("total (3 tables)")


def test_row_estimates_sum_a_partitioned_tables_partitions(make_db, connect_db):
    dsn = make_db()
    execute(dsn, "CREATE TABLE m (id int, at date) PARTITION BY RANGE (at)",
            "CREATE TABLE m1 PARTITION OF m FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')",
            "CREATE TABLE m2 PARTITION OF m FOR VALUES FROM ('2021-01-01') TO ('2022-01-01')",
            "INSERT INTO m SELECT g, date '2020-01-01' + g FROM generate_series(1, 700) g",
            "CREATE TABLE never (id int)", "INSERT INTO never VALUES (1)", "ANALYZE m1, m2")
    conn = connect_db(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT 'm'::regclass::oid, 'never'::regclass::oid")
        m, never = cur.fetchone()
        assert row_estimates(cur, [m, never]) == {m: 700}  # the parent's own is -1; never analysed: unknown
