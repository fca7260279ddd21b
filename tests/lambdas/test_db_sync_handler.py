"""The db_sync Lambda handler: a scheduled event with moto-faked Secrets Manager, the check action,
secret rotation, one-line failures and logs without passwords."""

from __future__ import annotations

import io
import json

import psycopg2
import pytest

from dbsync.errors import DbSyncError
from tests.support.db import snapshot
from tests.support.drift import ahead
from tests.support.lambda_context import FakeLambdaContext as Context

SCHEDULED_EVENT = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-25T03:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/db-sync-nightly"],
    "detail": {},
}


# aws (Secrets Manager faked by moto, the sync's variables cleared) and handler_logs are fixtures
# of tests/lambdas/conftest.py.


def tcp_params(pg_server, dbname: str) -> dict:
    params = psycopg2.extensions.parse_dsn(pg_server.dsn(dbname, via="127.0.0.1"))
    if not params.get("password") or not params.get("host"):
        pytest.skip("needs a server reached over TCP with a password")
    return params


def configure(aws, monkeypatch, pg_server, prod_dsn, staging_dsn, *, target_password=None) -> dict:
    """Source: full RDS secret JSON. Target: an RDS-managed master secret (username/password only),
    the rest from TARGET_DB_HOST/PORT/NAME."""
    src = tcp_params(pg_server, psycopg2.extensions.parse_dsn(prod_dsn)["dbname"])
    tgt = tcp_params(pg_server, psycopg2.extensions.parse_dsn(staging_dsn)["dbname"])
    source_arn = aws.create_secret(Name="db-sync/source", SecretString=json.dumps({
        "engine": "postgres", "host": src["host"], "port": int(src["port"]), "username": src["user"],
        "password": src["password"], "dbname": src["dbname"]}))["ARN"]
    target_arn = aws.create_secret(Name="db-sync/target", SecretString=json.dumps({
        "username": tgt["user"], "password": target_password or tgt["password"]}))["ARN"]
    monkeypatch.setenv("SOURCE_DB_SECRET_ARN", source_arn)
    monkeypatch.setenv("TARGET_DB_SECRET_ARN", target_arn)
    monkeypatch.setenv("TARGET_DB_HOST", tgt["host"])
    monkeypatch.setenv("TARGET_DB_PORT", str(tgt["port"]))
    monkeypatch.setenv("TARGET_DB_NAME", tgt["dbname"])
    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", f"staging.example.internal/other, {tgt['host']}/{tgt['dbname']}")
    return {"source_arn": source_arn, "target_arn": target_arn, "password": tgt["password"]}


def log_lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_reset_sequences_is_importable_from_the_handler():
    from dbsync.sequences import reset_sequences as engine
    from lambdas.db_sync.handler import reset_sequences

    assert reset_sequences is engine


def test_scheduled_event_with_secrets_syncs_and_fixes_inserts(aws, monkeypatch, pg_server, prod_and_staging,
                                                             connect_db, handler_logs):
    from lambdas.db_sync.handler import lambda_handler

    prod_dsn, staging_dsn = prod_and_staging
    cfg = configure(aws, monkeypatch, pg_server, prod_dsn, staging_dsn)

    # The check action first: the old-sync staging is broken, and says so.
    check = lambda_handler({"action": "check-sequences"}, Context())
    assert check["ok"] is False
    assert {(p["table"], p["column"]) for p in check["problems"]} >= {("books", "id"), ("users", "id")}
    assert all(p["problem"] for p in check["problems"])

    result = lambda_handler(SCHEDULED_EVENT, Context())
    json.dumps(result)
    assert result["validation"]["ok"] and len(result["tables"]) == 6
    assert {r["table"] for r in result["sequences_reset"]} == {"users", "authors", "books", "reviews"}
    assert "secret" in result["target"] and cfg["password"] not in json.dumps(result)

    staging = connect_db(staging_dsn)
    with staging.cursor() as cur:
        cur.execute("INSERT INTO books (title) VALUES ('after the sync') RETURNING id")
        new_id = cur.fetchone()[0]
        cur.execute("SELECT max(id) FROM books WHERE id <> %s", (new_id,))
        assert new_id > cur.fetchone()[0]
    staging.rollback()

    assert lambda_handler({"action": "check-sequences"}, Context()) == {"ok": True, "problems": [], "unverifiable": []}

    lines = log_lines(handler_logs)
    messages = [line["message"] for line in lines]
    assert "sync starting" in messages and "sync finished" in messages
    assert sum(m == "table copied" for m in messages) == 6
    assert all(line["service"] == "db_sync" for line in lines)
    assert cfg["password"] not in handler_logs.getvalue()


def test_rotated_secret_is_fetched_again_after_an_authentication_failure(aws, monkeypatch, pg_server,
                                                                         prod_and_staging, handler_logs):
    from dbsync.secrets import fetch_secret
    from lambdas.db_sync.handler import lambda_handler

    prod_dsn, staging_dsn = prod_and_staging
    stale = "stale-password-before-rotation"
    cfg = configure(aws, monkeypatch, pg_server, prod_dsn, staging_dsn, target_password=stale)
    assert stale in fetch_secret(cfg["target_arn"])  # a warm Lambda cached the old secret
    tgt = json.loads(aws.get_secret_value(SecretId=cfg["target_arn"])["SecretString"])
    aws.put_secret_value(SecretId=cfg["target_arn"],
                         SecretString=json.dumps({**tgt, "password": cfg["password"]}))  # rotation
    assert stale in fetch_secret(cfg["target_arn"])  # the cache still holds it

    result = lambda_handler(SCHEDULED_EVENT, Context())
    assert result["validation"]["ok"]
    assert stale not in handler_logs.getvalue() and cfg["password"] not in handler_logs.getvalue()


def test_wrong_password_fails_in_one_line_without_leaking_it(aws, monkeypatch, pg_server, prod_and_staging,
                                                            handler_logs):
    from lambdas.db_sync.handler import lambda_handler

    prod_dsn, staging_dsn = prod_and_staging
    wrong = "definitely-not-the-password-42"
    cfg = configure(aws, monkeypatch, pg_server, prod_dsn, staging_dsn, target_password=wrong)
    with pytest.raises(DbSyncError) as err:
        lambda_handler(SCHEDULED_EVENT, Context())
    msg = str(err.value)
    assert "cannot connect to the target database" in msg and "password authentication failed" in msg
    assert "\n" not in msg and wrong not in msg and cfg["password"] not in msg
    logged = handler_logs.getvalue()
    assert wrong not in logged and cfg["password"] not in logged
    failure = [line for line in log_lines(handler_logs) if line["level"] == "ERROR"]
    assert failure and failure[-1]["error"] == msg


def test_database_urls_from_the_environment_and_refusals(monkeypatch, prod_and_staging, handler_logs, aws):
    from lambdas.db_sync.handler import lambda_handler

    prod_dsn, staging_dsn = prod_and_staging
    with pytest.raises(DbSyncError, match="no source database configured: set SOURCE_DATABASE_URL"):
        lambda_handler(SCHEDULED_EVENT, Context())
    monkeypatch.setenv("SOURCE_DATABASE_URL", prod_dsn)
    monkeypatch.setenv("TARGET_DATABASE_URL", staging_dsn)
    with pytest.raises(DbSyncError, match="unknown action 'drop-everything'"):
        lambda_handler({"action": "drop-everything"}, Context())
    before = snapshot(staging_dsn)
    with pytest.raises(DbSyncError, match="is empty: omit it to sync every table"):
        lambda_handler({"action": "sync", "tables": []}, Context())
    with pytest.raises(DbSyncError, match="must be true or false"):
        lambda_handler({"action": "sync", "dry_run": "false"}, Context())
    assert snapshot(staging_dsn) == before
    dry = lambda_handler({"action": "sync", "dry_run": True, "tables": ["reviews"]}, Context())
    assert dry["dry_run"] and [t["table"] for t in dry["tables"]] == ["public.reviews"]
    monkeypatch.setenv("SYNC_TARGET_ALLOWLIST", "staging-db.example.internal/staging")
    with pytest.raises(DbSyncError, match="not in SYNC_TARGET_ALLOWLIST"):
        lambda_handler(SCHEDULED_EVENT, Context())
    monkeypatch.setenv("TARGET_DB_SECRET_ARN", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x")
    with pytest.raises(DbSyncError, match="both TARGET_DATABASE_URL and TARGET_DB_SECRET_ARN are set"):
        lambda_handler(SCHEDULED_EVENT, Context())


# -- the event and the settings, before anything connects ---------------------------------------

@pytest.mark.parametrize("event, message", [
    ([], "the event must be a JSON object"),
    ("sync", "the event must be a JSON object"),
    ({"action": "drop-everything"},
     "unknown action 'drop-everything': expected one of sync, check-sequences, verify"),
    ({"action": None}, "unknown action None: expected one of sync, check-sequences, verify"),
    ({"tables": "books"}, '"tables" must be a list of table names'),
    ({"tables": ["books", 3]}, '"tables" must be a list of table names'),
    ({"tables": []}, '"tables" is empty: omit it to sync every table'),
    ({"dry_run": "false"}, '"dry_run" must be true or false'),
    ({"dry_run": 0}, '"dry_run" must be true or false'),
])
def test_a_bad_event_is_refused_in_one_line(event, message):
    from lambdas.db_sync.handler import parse_event

    with pytest.raises(DbSyncError) as caught:
        parse_event(event)
    assert str(caught.value) == message
    assert caught.value.__suppress_context__


def test_events_parse_into_the_model():
    from lambdas.db_sync.handler import DbSyncEvent, parse_event

    assert parse_event(SCHEDULED_EVENT) == DbSyncEvent(action="sync", tables=None, dry_run=False)
    assert parse_event(None) == parse_event({}) == DbSyncEvent()
    assert parse_event({"action": "sync", "tables": ["public.books"], "dry_run": True}) == DbSyncEvent(
        tables=["public.books"], dry_run=True)
    assert parse_event({"action": "check-sequences"}).action == "check-sequences"
    assert parse_event({"action": "verify", "tables": ["books"]}) == DbSyncEvent(action="verify", tables=["books"])


@pytest.mark.parametrize("env, message", [
    ({"TARGET_DB_PORT": "abc"},
     "TARGET_DB_PORT: Input should be a valid integer, unable to parse string as an integer"),
    ({"SOURCE_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x"},
     "both SOURCE_DATABASE_URL and SOURCE_DB_SECRET_ARN are set; set only one"),
    ({"SYNC_MODE": "sometimes"}, "SYNC_MODE='sometimes' is not one of full, incremental"),
    ({"SYNC_SCHEMA_DRIFT": "sometimes"}, "SYNC_SCHEMA_DRIFT='sometimes' is not one of tolerate, refuse"),
    ({"SYNC_DELETE_ORPHANS": "perhaps"}, "SYNC_DELETE_ORPHANS: Input should be a valid boolean, unable to interpret"
                                         " input"),
    ({"SYNC_MAX_SECONDS": "-5"}, "SYNC_MAX_SECONDS: the time budget must be a positive number of seconds, not -5"),
    ({"SYNC_MASKING_KEY": "hunter2-key", "SYNC_MASKING_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:k"},
     "both SYNC_MASKING_KEY and SYNC_MASKING_KEY_SECRET_ARN are set; set only one"),
    ({"LOCK_TIMEOUT": "soon"}, "LOCK_TIMEOUT='soon' is not a duration such as 10s, 500ms or 2min"),
])
def test_a_bad_setting_fails_the_invocation_in_one_line(aws, monkeypatch, handler_logs, env, message):
    from lambdas.db_sync.handler import lambda_handler

    monkeypatch.setenv("SOURCE_DATABASE_URL", "postgresql://prod:hunter2-pw@prod.example/books")
    monkeypatch.setenv("TARGET_DATABASE_URL", "postgresql://staging:hunter2-pw@staging.example/books")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DbSyncError) as caught:
        lambda_handler(SCHEDULED_EVENT, Context())
    assert str(caught.value) == message
    assert "hunter2" not in handler_logs.getvalue()


def test_the_drift_policy_comes_from_the_environment(aws, handler_logs, monkeypatch, make_db):
    from lambdas.db_sync.handler import lambda_handler

    prod, staging = ahead(make_db)
    monkeypatch.setenv("SOURCE_DATABASE_URL", prod)
    monkeypatch.setenv("TARGET_DATABASE_URL", staging)
    monkeypatch.setenv("SYNC_SCHEMA_DRIFT", "refuse")
    with pytest.raises(DbSyncError, match="table public.audit_log is missing on the target"):
        lambda_handler(SCHEDULED_EVENT, Context())
    monkeypatch.setenv("SYNC_SCHEMA_DRIFT", "tolerate")
    monkeypatch.setenv("SYNC_DELETE_ORPHANS", "true")
    monkeypatch.setenv("SYNC_EXCLUDE_TABLES", "public.audit_log")
    result = lambda_handler(SCHEDULED_EVENT, Context())
    assert result["schema_drift"]["excluded"] == ["public.audit_log"]
    assert result["schema_drift"]["prod_only_columns"] == ["public.customers.hotfix"]
    warned = [line for line in log_lines(handler_logs) if line["message"] == "sync warning"]
    assert [w["warning"] for w in warned] == result["warnings"]


def test_log_lines_carry_the_lambda_context(aws, handler_logs):
    from lambdas.db_sync.handler import lambda_handler

    context = Context(aws_request_id="req-1234")
    with pytest.raises(DbSyncError, match="no source database configured"):
        lambda_handler({"action": "sync"}, context)
    (line,) = log_lines(handler_logs)
    assert line["message"] == "db_sync failed" and line["action"] == "sync"
    assert (line["function_name"], line["function_request_id"]) == ("db_sync", "req-1234")
    assert line["function_arn"] == context.invoked_function_arn and "cold_start" in line


def test_the_lambdas_log_lines_never_show_the_masking_key(prod_and_staging, aws, handler_logs, monkeypatch,
                                                          tmp_path, capsys):
    """A masked sync's log lines, its result, and a failed one's error (its SQLSTATE among the log
    line's fields) never show the key, in text or in the hex it travels as."""
    from lambdas.db_sync import handler

    key = "the masking key of this test, 0123456789abcdef"
    rules = open("backend/sync-rules.yaml").read()
    failing = tmp_path / "failing.yaml"  # a review's body fails on prod while the keyed COPY runs
    failing.write_text(rules.replace("body: redact", 'body: {sql: "CASE WHEN id = 3 THEN (1 / (id - 3))::text'
                                                     ' ELSE body END"}'))
    prod, staging = prod_and_staging
    monkeypatch.setenv("SOURCE_DATABASE_URL", prod)
    monkeypatch.setenv("TARGET_DATABASE_URL", staging)
    monkeypatch.setenv("SYNC_MASKING_KEY", key)
    monkeypatch.setenv("SYNC_RULES_FILE", "backend/sync-rules.yaml")
    result = handler.lambda_handler({}, Context(remaining_seconds=300))
    monkeypatch.setenv("SYNC_RULES_FILE", str(failing))
    with pytest.raises(DbSyncError, match="division by zero") as caught:
        handler.lambda_handler({}, Context(remaining_seconds=300))
    logs = handler_logs.getvalue()
    assert '"sqlstate":"22012"' in logs.replace(" ", "")  # the cause, as a field of the log line
    printed = capsys.readouterr()
    for text in (logs, printed.out, printed.err, json.dumps(result), str(caught.value)):
        assert key not in text and key.encode().hex() not in text
