"""The masking key: refused when short, and never shown — not in any output, log line, result or
`--debug` traceback of a run, not in a connection's repr or dsn, not in the run's repr."""

from __future__ import annotations

import json

import pytest

from dbsync.cli import main
from dbsync.connect import connect
from dbsync.errors import EXIT_BUG, EXIT_FAILED
from dbsync.masking.key import MaskingKey, MaskingKeyError
from dbsync.sync.run import SyncOptions, SyncRun

KEY_TEXT = "the masking key of this test, 0123456789abcdef"
RULES = "backend/sync-rules.yaml"
# The shipped rules, but a review's body fails on prod while the keyed COPY runs.
FAILING_RULES = open(RULES).read().replace(  # noqa: SIM115 - read once at import
    "body: redact", """body: {sql: "CASE WHEN id = 3 THEN (1 / (id - 3))::text ELSE body END"}""")


def shows_key(text: str) -> bool:
    return KEY_TEXT in text or KEY_TEXT.encode().hex() in text


@pytest.fixture
def keyed_env(monkeypatch, no_sync_env):
    monkeypatch.setenv("SYNC_MASKING_KEY", KEY_TEXT)


@pytest.mark.parametrize("text", ["", "x", "a" * 31])
def test_a_key_shorter_than_32_characters_is_refused(text):
    with pytest.raises(MaskingKeyError, match=r"openssl rand -hex 32"):
        MaskingKey(text.encode())


def test_the_cli_refuses_a_short_key_in_one_line(prod_and_staging, monkeypatch, no_sync_env, capsys):
    prod, staging = prod_and_staging
    monkeypatch.setenv("SYNC_MASKING_KEY", "too short")
    assert main(["sync", "--source", prod, "--target", staging, "--rules", RULES]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fewer than 32" in err and "openssl rand -hex 32" in err


def test_no_output_of_a_masked_run_shows_the_key(prod_and_staging, keyed_env, tmp_path, capsys, caplog):
    prod, staging = prod_and_staging
    assert main(["sync", "--source", prod, "--target", staging, "--rules", RULES,
                 "--json", "--debug"]) == 0
    done = capsys.readouterr()
    assert json.loads(done.out)["masking"]["masked_columns"]
    rules = tmp_path / "failing.yaml"
    rules.write_text(FAILING_RULES)
    assert main(["sync", "--source", prod, "--target", staging, "--rules", str(rules), "--json", "--debug"]) == 2
    failed = capsys.readouterr()
    assert "division by zero" in failed.err and "Traceback" in failed.err  # --debug shows the traceback
    assert json.loads(failed.out)["error"]["sqlstate"] == "22012"
    for text in (done.out, done.err, failed.out, failed.err, caplog.text):
        assert not shows_key(text)


def test_a_bug_inside_a_masked_run_shows_its_traceback_but_not_the_key(prod_and_staging, keyed_env, monkeypatch,
                                                                       capsys):
    """Exit 70 for an unexpected exception; its traceback (with --debug) carries the run's and the
    connections' reprs, which hide the key and the passwords."""
    prod, staging = prod_and_staging
    real_step = SyncRun.step

    def buggy_step(run, phase):
        if phase.name == "validate":
            raise RuntimeError(f"a bug: {run!r} {run.source!r} {run.source.dsn} {run.options!r}")
        real_step(run, phase)

    monkeypatch.setattr(SyncRun, "step", buggy_step)
    assert main(["sync", "--source", prod, "--target", staging, "--rules", RULES,
                 "--debug"]) == EXIT_BUG
    err = capsys.readouterr().err
    assert "internal error (a bug in db-sync): RuntimeError" in err and "Traceback" in err
    assert "dbsync connection" in err and "options=(hidden)" in err
    assert not shows_key(err)


def test_a_connection_and_a_run_hide_the_key(prod_and_staging):
    prod, staging = prod_and_staging
    key = MaskingKey(KEY_TEXT.encode())
    conn = connect(prod, role="source", options=key.startup_options())
    try:
        assert not shows_key(repr(conn)) and not shows_key(conn.dsn)
        with conn.cursor() as cur:  # the key did reach the session
            cur.execute("SELECT current_setting('dbsync.mask_key')")
            assert cur.fetchone()[0] == key.value.hex()
    finally:
        conn.close()
    run = SyncRun(prod, staging, SyncOptions(masking_key=key))
    run.source = conn
    assert not shows_key(repr(run)) and not shows_key(repr(run.options))
    assert "password" not in repr(run).lower()

