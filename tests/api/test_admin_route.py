"""The temporary admin route, through the Mangum handler with API Gateway HTTP API v2 events.

(Every admin-route test lives in a file named test_admin_route*: the cleanup deletes them with
the route, and tests/support/admin_route.py, which they share.)
"""

from __future__ import annotations

import json

import pytest

from app.api.v1.admin import AdminSettings, get_admin_settings
from dbsync.settings import SettingsError
from tests.support.admin_route import KEY, PATH, UNAUTHORIZED, assert_insert_still_broken, db_state, max_id
from tests.support.http import free_port

# admin_api, audit_lines and make_api are fixtures of tests/api/conftest.py.


def test_repairs_the_old_sync_staging(prod_and_staging, admin_api, audit_lines):
    _, staging = prod_and_staging
    client = admin_api(staging)

    # Before: the bug. A clean 500 body, not a traceback, and nothing inserted.
    broken = client.post("/api/v1/books", body={"title": "Before the repair"})
    assert broken.status_code == 500
    assert broken.json() == {"detail": "the database refused the request; see the API's logs"}
    assert "Traceback" not in broken.text and "null value" not in broken.text

    # A dry run reports the plan and changes nothing.
    before = db_state(staging)
    dry = client.post(PATH, headers={"X-API-Key": KEY}, body={"dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    assert dry.json()["counts"]["sequence_created"] == 4
    assert db_state(staging) == before
    assert_insert_still_broken(client)

    # The repair.
    books_max = max_id(staging, "books")
    fixed = client.post(PATH, headers={"X-API-Key": KEY})
    assert fixed.status_code == 200, fixed.text
    body = fixed.json()
    assert body["dry_run"] is False
    assert body["counts"] == {"reset": 0, "unchanged": 0, "default_restored": 0, "sequence_created": 4,
                              "unverifiable": 0, "error": 0}
    by_table = {s["table"]: s for s in body["sequences"]}
    assert set(by_table) == {"authors", "books", "reviews", "users"}
    assert by_table["books"] == {**by_table["books"], "column": "id", "sequence": "public.books_id_seq",
                                 "schema": "public", "value": books_max + 1, "previous": None,
                                 "action": "sequence_created", "error": None}
    assert db_state(staging) != before

    # After: INSERT works and takes the id right after the existing data.
    created = client.post("/api/v1/books", body={"title": "After the repair"})
    assert created.status_code == 201, created.text
    assert created.json()["id"] == books_max + 1
    assert client.post("/api/v1/books", body={"title": "and again"}).json()["id"] == books_max + 2

    # Running it again finds nothing to do.
    again = client.post(PATH, headers={"X-API-Key": KEY}, body={"dry_run": False})
    assert again.json()["counts"] == {"reset": 0, "unchanged": 4, "default_restored": 0,
                                      "sequence_created": 0, "unverifiable": 0, "error": 0}

    # One audit line per admin call: caller IP from the event, dry_run, counts; never the key.
    audits = [json.loads(line) for line in audit_lines if '"audit"' in line]
    assert [(a["outcome"], a["dry_run"]) for a in audits] == [("ok", True), ("ok", False), ("ok", False)]
    assert all(a["caller_ip"] == "203.0.113.7" and a["status"] == 200 for a in audits)
    assert audits[1]["counts"] == body["counts"]
    assert not any(KEY in line for line in audit_lines)


def test_schemas_and_create_missing_reach_the_engine(prod_and_staging, admin_api):
    _, staging = prod_and_staging
    client = admin_api(staging)
    before = db_state(staging)
    # Without create_missing nothing can be repaired here (the old sync dropped every sequence).
    r = client.post(PATH, headers={"X-API-Key": KEY}, body={"create_missing": False})
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["sequence_created"] == 0
    assert db_state(staging) == before
    # A schema with no tables in it: nothing to do.
    r = client.post(PATH, headers={"X-API-Key": KEY}, body={"schemas": ["no_such_schema"]})
    assert r.status_code == 200, r.text
    assert r.json()["sequences"] == [] and sum(r.json()["counts"].values()) == 0
    assert db_state(staging) == before
    r = client.post(PATH, headers={"X-API-Key": KEY}, body={"schemas": ["public"], "dry_run": True})
    assert r.json()["counts"]["sequence_created"] == 4


REFUSALS = [
    pytest.param({"headers": {"X-API-Key": "wrong-key"}}, {}, 401, id="wrong-key"),
    pytest.param({"headers": {"X-API-Key": KEY[:-1]}}, {}, 401, id="key-prefix"),
    pytest.param({"headers": {"X-API-Key": KEY + "x"}}, {}, 401, id="key-longer"),
    pytest.param({}, {}, 401, id="missing-key"),
    pytest.param({"headers": {"X-API-Key": ""}}, {}, 401, id="empty-key"),
    pytest.param({"headers": {"X-API-Key": "clé-ünïcode"}}, {}, 401, id="non-ascii-key"),
    pytest.param({"headers": {"Authorization": f"Bearer {KEY}"}}, {}, 401, id="key-in-wrong-header"),
    pytest.param({"headers": {"X-API-Key": KEY}}, {"stage": "prod"}, 403, id="stage-prod"),
    pytest.param({"headers": {"X-API-Key": KEY}}, {"stage": "Production"}, 403, id="stage-production"),
    pytest.param({"headers": {"X-API-Key": KEY}}, {"stage": None}, 403, id="stage-unset"),
    pytest.param({"headers": {"X-API-Key": KEY}}, {"stage": "prod", "allow_prod": "false"}, 403,
                 id="prod-allow-false"),
    pytest.param({"headers": {"X-API-Key": "wrong"}}, {"stage": "prod"}, 401, id="prod-and-wrong-key-is-401"),
    pytest.param({"headers": {"X-API-Key": KEY}}, {"key": None}, 404, id="no-key-configured"),
    pytest.param({"headers": {"X-API-Key": KEY}}, {"key": "   "}, 404, id="blank-key-configured"),
]


@pytest.mark.parametrize("request_kw, app_kw, expected", REFUSALS)
def test_refusals_change_nothing(prod_and_staging, admin_api, audit_lines, request_kw, app_kw, expected):
    _, staging = prod_and_staging
    client = admin_api(staging, **app_kw)
    before = db_state(staging)
    # A body that would repair, and a malformed one: neither is even read before the checks.
    for body in ({"dry_run": False}, "{not json", {"dry_run": "sometimes", "extra": 1}, None):
        r = client.post(PATH, body=body, **request_kw)
        assert r.status_code == expected, r.text
        if expected == 401:
            assert r.json() == UNAUTHORIZED  # the same answer whatever was wrong
            assert r.headers["www-authenticate"] == "APIKey"
        elif expected == 403:
            assert "STAGE" in r.json()["detail"] and "ADMIN_ALLOW_PROD" in r.json()["detail"]
        elif expected == 404:
            assert r.json() == {"detail": "Not Found"}
    assert db_state(staging) == before
    assert_insert_still_broken(client)
    audits = [line for line in audit_lines if '"audit"' in line]
    if expected == 404:
        assert audits == []
    else:
        assert len(audits) == 4
        assert KEY not in "".join(audit_lines)
        assert all(json.loads(a)["status"] == expected for a in audits)


@pytest.mark.parametrize("stage, production", [
    (None, True), ("", True), ("  ", True), ("prod", True), ("PROD", True), ("production", True),
    (" Staging ", False), ("dev", False),
])
def test_stage_fails_closed(monkeypatch, stage, production):
    """STAGE, which only the route reads: unset (or blank), prod or production counts as production."""
    for name in AdminSettings.variables():
        monkeypatch.delenv(name, raising=False)
    if stage is not None:
        monkeypatch.setenv("STAGE", stage)
    assert AdminSettings.load().is_production is production


def test_403_names_the_stage(prod_and_staging, admin_api):
    _, staging = prod_and_staging
    r = admin_api(staging, stage="prod").post(PATH, headers={"X-API-Key": KEY})
    assert r.json()["detail"].startswith("STAGE='prod':")
    r = admin_api(staging, stage=None).post(PATH, headers={"X-API-Key": KEY})
    assert r.json()["detail"].startswith("STAGE is not set:")


def test_admin_allow_prod_lets_a_prod_stage_through(prod_and_staging, admin_api):
    _, staging = prod_and_staging
    r = admin_api(staging, stage="prod", allow_prod="true").post(PATH, headers={"X-API-Key": KEY},
                                                                  body={"dry_run": True})
    assert r.status_code == 200, r.text


def test_non_ascii_configured_key_matches_its_utf8_bytes(prod_and_staging, admin_api):
    _, staging = prod_and_staging
    client = admin_api(staging, key="clé-ünïcode-κλειδί")
    before = db_state(staging)
    # Mangum sends header values as UTF-8 bytes; the comparison is on those bytes.
    assert client.post(PATH, headers={"X-API-Key": "clé-ünïcode-κλειδί"}, body={"dry_run": True}).status_code == 200
    assert client.post(PATH, headers={"X-API-Key": "cle-unicode"}).status_code == 401
    assert db_state(staging) == before


@pytest.mark.parametrize("body, loc", [
    ("{not json", ["body"]),
    ({"dry_run": "sometimes"}, ["body", "dry_run"]),
    ({"dry_run": True, "unknown": 1}, ["body", "unknown"]),
    ({"schemas": []}, ["body", "schemas"]),
    ({"schemas": "public"}, ["body", "schemas"]),
    ("[]", ["body"]),
    ("null", ["body"]),
])
def test_malformed_body_is_422_for_a_key_holder(prod_and_staging, admin_api, audit_lines, body, loc):
    _, staging = prod_and_staging
    client = admin_api(staging)
    before = db_state(staging)
    r = client.post(PATH, headers={"X-API-Key": KEY, "content-type": "application/json"}, body=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][: len(loc)] == loc
    assert db_state(staging) == before
    audits = [json.loads(a) for a in audit_lines if '"audit"' in a]
    assert [(a["outcome"], a["status"]) for a in audits] == [("invalid_body", 422)]


def test_empty_body_and_any_content_type_use_the_defaults(prod_and_staging, admin_api):
    _, staging = prod_and_staging
    client = admin_api(staging)
    # `curl -X POST -d '{"dry_run":true}'` sends application/x-www-form-urlencoded.
    r = client.post(PATH, headers={"X-API-Key": KEY, "content-type": "application/x-www-form-urlencoded"},
                    body='{"dry_run": true}')
    assert r.status_code == 200 and r.json()["dry_run"] is True
    r = client.post(PATH, headers={"X-API-Key": KEY}, body="  \n")
    assert r.status_code == 200 and r.json()["dry_run"] is False


def test_openapi_with_a_key_lists_the_route_its_scheme_and_models(db_dsn, admin_api):
    client = admin_api(db_dsn)
    spec = client.get("/openapi.json").json()
    op = spec["paths"][PATH]["post"]
    assert set(spec["paths"][PATH]) == {"post"}
    assert op["security"] == [{"APIKeyHeader": []}]
    assert spec["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "the admin key (ADMIN_API_KEY or the ADMIN_API_KEY_SECRET_ARN secret)"}
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["title"] == "ResetSequencesRequest"
    assert set(body["properties"]) == {"dry_run", "schemas", "create_missing"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ResetSequencesResponse"}
    schemas = spec["components"]["schemas"]
    assert set(schemas["ResetSequencesResponse"]["properties"]) == {"dry_run", "counts", "sequences"}
    assert set(schemas["ResetCounts"]["required"]) == {"reset", "unchanged", "default_restored",
                                                       "sequence_created", "error"}
    assert {"table", "column", "sequence", "value", "schema", "previous", "action", "error"} <= set(
        schemas["SequenceResult"]["properties"])
    assert {"401", "403", "422", "503"} <= set(op["responses"])
    assert "Authorize" in client.get("/docs").text or client.get("/docs").status_code == 200
    # Mounted: other methods are 405, not 404.
    assert client.get(PATH).status_code == 405


def test_without_a_key_the_route_does_not_exist(db_dsn, admin_api):
    client = admin_api(db_dsn, key=None)
    spec = client.get("/openapi.json").json()
    assert not any("admin" in p for p in spec["paths"])
    assert "securitySchemes" not in spec.get("components", {})
    assert "/api/v1/books" in spec["paths"]
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"):
        for path in (PATH, "/api/v1/admin", "/api/v1/admin/"):
            r = client.request(method, path, headers={"X-API-Key": KEY})
            assert r.status_code == 404, (method, path, r.status_code)


@pytest.mark.parametrize("env, message", [
    ({"ADMIN_API_KEY": KEY,
      "ADMIN_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:k-AbCdEf"},
     "both ADMIN_API_KEY and ADMIN_API_KEY_SECRET_ARN are set; set only one"),
    ({"ADMIN_API_KEY": KEY, "ADMIN_ALLOW_PROD": "maybe"},
     "ADMIN_ALLOW_PROD: Input should be a valid boolean, unable to interpret input"),
])
def test_bad_admin_setting_is_one_line_naming_the_variable(db_dsn, make_api, monkeypatch, env, message):
    """Raised when the app is built, i.e. at the Lambda's import: the key is never echoed."""
    for name in AdminSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_admin_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as caught:
            make_api(database_url=db_dsn)
    finally:
        get_admin_settings.cache_clear()
    assert str(caught.value) == message and KEY not in str(caught.value)
    assert caught.value.__suppress_context__


def test_unreachable_database_is_a_short_503(admin_api, audit_lines):
    dsn = f"postgresql://api:hunter2-pw@127.0.0.1:{free_port()}/staging"
    r = admin_api(dsn).post(PATH, headers={"X-API-Key": KEY})
    assert r.status_code == 503
    detail = r.json()["detail"]
    assert detail.startswith("cannot connect to the API database (api@127.0.0.1:")
    assert "\n" not in detail and "hunter2" not in detail and "Traceback" not in r.text
    assert [json.loads(a)["outcome"] for a in audit_lines if '"audit"' in a] == ["database_error"]
    assert "hunter2" not in "".join(audit_lines)


def books_id_state(dsn: str):
    columns, sequences = db_state(dsn)
    return [c for c in columns if c[:2] == ("books", "id")], [q for q in sequences if q[1] == "books_id_seq"]


def test_lock_timeout_is_a_short_503_and_leaves_the_locked_table_alone(prod_and_staging, admin_api, connect_db,
                                                                       monkeypatch, audit_lines):
    _, staging = prod_and_staging
    monkeypatch.setenv("LOCK_TIMEOUT", "200ms")  # the engine's messages quote the variable
    client = admin_api(staging, lock_timeout="200ms")
    books_before = books_id_state(staging)
    blocker = connect_db(staging)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE books IN ACCESS EXCLUSIVE MODE")
    try:
        r = client.post(PATH, headers={"X-API-Key": KEY})
    finally:
        blocker.rollback()
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert "lock timeout (200ms)" in detail and "public.books.id" in detail and "\n" not in detail
    assert "1 column(s) locked, 3 handled" in detail
    assert books_id_state(staging) == books_before  # the engine moves on to the tables it can lock
    audit = [json.loads(a) for a in audit_lines if '"audit"' in a][-1]
    assert audit["status"] == 503 and audit["counts"]["error"] == 1
    # The lock is gone: the same call now finishes the job.
    again = client.post(PATH, headers={"X-API-Key": KEY})
    assert again.status_code == 200
    assert again.json()["counts"] == {"reset": 0, "unchanged": 3, "default_restored": 0, "sequence_created": 1,
                                      "unverifiable": 0, "error": 0}
    assert client.post("/api/v1/books", body={"title": "unlocked"}).json()["id"] == max_id(staging, "books")


def test_key_from_secrets_manager(prod_and_staging, admin_api, monkeypatch):
    import boto3
    from moto import mock_aws

    _, staging = prod_and_staging
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="book-api/admin-key-test", SecretString="key-from-the-secret\n")["ARN"]
        client = admin_api(staging, key=None, key_arn=arn)
        assert "/api/v1/admin/reset-sequences" in client.get("/openapi.json").json()["paths"]
        assert client.post(PATH, headers={"X-API-Key": "key-from-the-secret"},
                           body={"dry_run": True}).status_code == 200
        assert client.post(PATH, headers={"X-API-Key": KEY}).json() == UNAUTHORIZED

        missing = arn.rsplit(":", 1)[0] + ":book-api/no-such-secret-AbCdEf"
        r = admin_api(staging, key=None, key_arn=missing).post(PATH, headers={"X-API-Key": "key-from-the-secret"})
        assert r.status_code == 503 and r.json() == {"detail": "the admin key could not be read"}
