"""The one-off repair as it will be run: `curl -X POST -H "X-API-Key: …"` against uvicorn serving
`app.main:app` (the README's command), on the old-sync staging.

(Part of the temporary admin route: deleted with it.)
"""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest

from app.api.v1.admin import AdminSettings
from tests.support.admin_route import KEY, PATH, UNAUTHORIZED, db_state, max_id
from tests.support.http import serve_in_thread, serve_subprocess

ADMIN_VARS = tuple(AdminSettings.model_fields)


def test_curl_flow_against_uvicorn_app_main(prod_and_staging):
    _, staging = prod_and_staging
    env = {"DATABASE_URL": staging, "STAGE": "staging", "ADMIN_API_KEY": KEY, "LOCK_TIMEOUT": "5s"}
    with serve_subprocess(env, clear=ADMIN_VARS) as (url, _), httpx.Client(base_url=url) as http:
        broken = http.post("/api/v1/books", json={"title": "before"})
        assert broken.status_code == 500
        assert broken.json() == {"detail": "the database refused the request; see the API's logs"}

        before = db_state(staging)
        assert http.post(PATH, headers={"X-API-Key": "nope"}).json() == UNAUTHORIZED
        assert http.post(PATH).status_code == 401
        # Raw non-ASCII bytes in the header, as a misconfigured client might send them.
        for raw in ("clé".encode(), b"\xff\xfe", KEY.encode() + "é".encode("latin-1")):
            r = http.post(PATH, headers={"X-API-Key": raw}, json={"dry_run": False})
            assert r.status_code == 401 and r.json() == UNAUTHORIZED
        dry = http.post(PATH, headers={"X-API-Key": KEY}, json={"dry_run": True})
        assert dry.status_code == 200 and dry.json()["counts"]["sequence_created"] == 4
        assert db_state(staging) == before

        fixed = http.post(PATH, headers={"X-API-Key": KEY})
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["counts"]["error"] == 0
        created = http.post("/api/v1/books", json={"title": "after"})
        assert created.status_code == 201
        assert created.json()["id"] == max_id(staging, "books")
        assert http.get(f"/api/v1/books/{created.json()['id']}").json()["title"] == "after"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")
def test_readme_curl_command(prod_and_staging):
    _, staging = prod_and_staging
    env = {"DATABASE_URL": staging, "STAGE": "staging", "ADMIN_API_KEY": KEY}
    with serve_subprocess(env, clear=ADMIN_VARS) as (url, _):
        # As in the README (with -s to keep the test output quiet).
        out = subprocess.run(
            ["curl", "-s", "-X", "POST", "-H", f"X-API-Key: {KEY}", "-H", "Content-Type: application/json",
             "-d", '{"dry_run": false}', f"{url}/api/v1/admin/reset-sequences"],
            capture_output=True, text=True, timeout=60, check=True)
        body = json.loads(out.stdout)
        assert body["dry_run"] is False and body["counts"]["sequence_created"] == 4
        # And the form the README gives for `-d` without a Content-Type (curl sends a form type).
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", "-H", f"X-API-Key: {KEY}",
                              "-d", '{"dry_run": true}', f"{url}{PATH}"],
                             capture_output=True, text=True, timeout=60, check=True)
        text, code = out.stdout.rsplit("\n", 1)
        assert code == "200" and json.loads(text)["counts"]["unchanged"] == 4


def test_audit_line_has_the_socket_ip_over_http(prod_and_staging, admin_api, audit_lines):
    _, staging = prod_and_staging
    app = admin_api(staging).handler.app
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as http:
        assert http.post(PATH, headers={"X-API-Key": KEY}, json={"dry_run": True}).status_code == 200
        assert http.post(PATH, headers={"X-API-Key": "wrong"}).status_code == 401
    audits = [json.loads(a) for a in audit_lines if '"audit"' in a]
    assert [(a["outcome"], a["caller_ip"]) for a in audits] == [("ok", "127.0.0.1"), ("unauthorized", "127.0.0.1")]
    assert audits[0]["dry_run"] is True and audits[0]["counts"]["sequence_created"] == 4
    assert audits[1]["key_sent"] is True and "wrong" not in json.dumps(audits[1])
