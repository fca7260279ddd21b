"""The API through its real entry points: the Mangum handler fed API Gateway HTTP API (payload
v2) events, as Lambda calls it, and uvicorn on a free local port with an HTTP client.

The helpers here (events, the in-process and subprocess servers, `make_api`) are imported by the
other API test files.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from mangum import Mangum

from app.core.settings import Settings, get_settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]
SOURCE_IP = "203.0.113.7"


# -- API Gateway HTTP API (payload format 2.0) events -----------------------------------------


def http_api_event(method: str, path: str, *, body: bytes | str | dict | None = None, query: str = "",
                   headers: dict[str, str] | None = None, source_ip: str = SOURCE_IP) -> dict:
    """An event as API Gateway's HTTP API sends it to a Lambda proxy integration (version 2.0)."""
    hdrs = {"host": "abc123.execute-api.eu-west-1.amazonaws.com", "user-agent": "curl/8.5.0",
            "x-forwarded-for": source_ip, "x-forwarded-port": "443", "x-forwarded-proto": "https",
            "accept": "*/*"}
    is_b64 = False
    if isinstance(body, dict):
        body = json.dumps(body)
        hdrs["content-type"] = "application/json"
    elif isinstance(body, bytes):
        body, is_b64 = base64.b64encode(body).decode(), True
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    now = time.time()
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": hdrs["host"],
            "domainPrefix": "abc123", "requestId": uuid.uuid4().hex, "routeKey": "$default",
            "stage": "$default", "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": hdrs["user-agent"]},
        },
        "isBase64Encoded": is_b64,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if body is not None:
        event["body"] = body
    return event


def lambda_context() -> SimpleNamespace:
    return SimpleNamespace(function_name="book-api", memory_limit_in_mb=512, aws_request_id=uuid.uuid4().hex,
                           invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:book-api",
                           get_remaining_time_in_millis=lambda: 29_000)


class LambdaResponse:
    def __init__(self, raw: dict):
        assert set(raw) >= {"statusCode", "headers", "body", "isBase64Encoded"}, raw
        self.raw = raw
        self.status_code = raw["statusCode"]
        self.headers = raw["headers"]
        body = raw["body"]
        self.content = base64.b64decode(body) if raw["isBase64Encoded"] else body.encode()
        self.text = self.content.decode()

    def json(self):
        return json.loads(self.content)


class LambdaClient:
    """Calls a Mangum handler the way the Lambda runtime does: handler(event, context)."""

    def __init__(self, handler_or_app):
        self.handler = handler_or_app if isinstance(handler_or_app, Mangum) else Mangum(handler_or_app,
                                                                                        lifespan="off")

    def request(self, method: str, path: str, **kw) -> LambdaResponse:
        return LambdaResponse(self.handler(http_api_event(method, path, **kw), lambda_context()))

    def get(self, path: str, **kw) -> LambdaResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> LambdaResponse:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw) -> LambdaResponse:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw) -> LambdaResponse:
        return self.request("DELETE", path, **kw)


# -- building apps and serving them over HTTP -------------------------------------------------


def clear_api_env(monkeypatch) -> None:
    """The outer environment must not leak into an app a test builds."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def make_api(monkeypatch):
    """Factory: create_app(Settings(**kw)) with the API's variables cleared first; the apps'
    connections are closed after the test."""
    clear_api_env(monkeypatch)
    apps = []

    def make(**settings):
        get_settings.cache_clear()
        app = create_app(Settings(**settings))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.db.close()
    get_settings.cache_clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app):
    """uvicorn serving `app` on a free loopback port in this process; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def serve_subprocess(env: dict[str, str], *, clear: tuple[str, ...] = ()):
    """`uvicorn app.main:app --app-dir backend` as the README runs it, with `env` on top of an
    environment without the API's settings (nor the variables in `clear`); yields the base URL.
    Retries on the rare lost race for the port."""
    drop = {name.upper() for name in (*Settings.model_fields, *clear)}
    base_env = {k: v for k, v in os.environ.items() if k.upper() not in drop}
    for _ in range(3):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--app-dir", "backend", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env={**base_env, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                httpx.get(url + "/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
        output = proc.stdout.read().decode()
        if "address already in use" not in output:
            raise AssertionError(f"uvicorn exited: {output}")
    try:
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# -- the entry points themselves --------------------------------------------------------------


@pytest.fixture
def api_db(make_db, connect_db):
    """A fresh database with the app's migrations applied; returns its DSN."""
    from app.migrate import apply_migrations

    dsn = make_db("api")
    apply_migrations(connect_db(dsn))
    return dsn


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
