"""The API through its real entry points: the Mangum handler fed API Gateway HTTP API (payload
v2) events, as Lambda calls it, and uvicorn on a free local port with an HTTP client.

(The events, LambdaClient and the servers are in tests/support/api.py and http.py; make_api and
api_db in tests/api/conftest.py.)
"""

from __future__ import annotations

import importlib
import json

import httpx
from mangum import Mangum

from app.core.settings import get_settings
from tests.support.api import LambdaClient, clear_api_env
from tests.support.http import free_port, serve_in_thread, serve_subprocess


def test_main_module_handler_serves_a_v2_event(api_db, monkeypatch):
    """`app.main.handler`, the name template.yaml points at, built from the environment."""
    clear_api_env(monkeypatch)
    monkeypatch.setenv("DATABASE_URL", api_db)
    get_settings.cache_clear()
    import app.main

    main = importlib.reload(app.main)
    try:
        assert isinstance(main.handler, Mangum)
        client = LambdaClient(main.handler)
        health = client.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}
        assert health.headers["content-type"] == "application/json"
        created = client.post("/api/v1/books", body={"title": "Through Lambda"})
        assert created.status_code == 201, created.text
        got = client.get(f"/api/v1/books/{created.json()['id']}")
        assert got.status_code == 200 and got.json()["title"] == "Through Lambda"
    finally:
        main.app.state.db.close()
        get_settings.cache_clear()


def test_base64_body_and_query_string_through_mangum(api_db, make_api):
    client = LambdaClient(make_api(database_url=api_db))
    created = client.post("/api/v1/books", body=json.dumps({"title": "Zoë"}).encode(),
                          headers={"content-type": "application/json"})
    assert created.status_code == 201, created.text
    assert created.json()["title"] == "Zoë"
    page = client.get("/api/v1/books", query="limit=1&offset=0")
    assert page.status_code == 200 and page.json()["limit"] == 1 and page.json()["total"] == 1


def test_connection_is_reused_across_invocations_and_reopened_when_killed(api_db, make_api, connect_db):
    app = make_api(database_url=api_db)
    client = LambdaClient(app)

    def backend_pid():
        return app.state.db.run(lambda conn: conn.get_backend_pid())

    assert client.get("/health").status_code == 200
    pid = backend_pid()
    assert client.get("/api/v1/books").status_code == 200
    assert backend_pid() == pid  # one connection per warm container

    admin = connect_db(api_db, autocommit=True)
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The next request finds the connection dead, reconnects once and succeeds.
    created = client.post("/api/v1/books", body={"title": "after a restart"})
    assert created.status_code == 201, created.text
    assert backend_pid() != pid
    assert client.get(f"/api/v1/books/{created.json()['id']}").status_code == 200


def test_unreachable_database_is_a_short_503(make_api):
    dsn = f"postgresql://someone:hunter2-secret@127.0.0.1:{free_port()}/nowhere"
    client = LambdaClient(make_api(database_url=dsn))
    for method, path, body in (("GET", "/health", None), ("GET", "/api/v1/books", None),
                               ("POST", "/api/v1/books", {"title": "x"})):
        r = client.request(method, path, body=body)
        assert r.status_code == 503, r.text
        assert r.json() == {"detail": "the database is unreachable or busy; try again"}
        assert "hunter2" not in r.text and "Traceback" not in r.text


def test_over_real_http_in_process(api_db, make_api):
    with serve_in_thread(make_api(database_url=api_db)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/health").json() == {"status": "ok", "database": "ok"}
        created = http.post("/api/v1/books", json={"title": "Over HTTP", "isbn": "978-0"})
        assert created.status_code == 201
        assert created.headers["location"] == f"/api/v1/books/{created.json()['id']}"
        assert http.get(created.headers["location"]).json()["isbn"] == "978-0"


def test_readme_command_uvicorn_app_main(api_db):
    """The README's local run: `uvicorn app.main:app --app-dir backend` with DATABASE_URL."""
    with serve_subprocess({"DATABASE_URL": api_db}) as (url, _), httpx.Client(base_url=url) as http:
        assert http.get("/health").status_code == 200
        created = http.post("/api/v1/books", json={"title": "From uvicorn"})
        assert created.status_code == 201, created.text
        assert http.get("/api/v1/books").json()["total"] == 1
        assert "/api/v1/books" in http.get("/openapi.json").json()["paths"]
