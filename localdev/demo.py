"""`make demo`: the staging bug and its fix, end to end, on this machine, with no cloud account.

An embedded PostgreSQL 18 holds a "prod" with the book collection and a "staging" as the old
sync left it (rows copied, sequences and `nextval` defaults lost). The real API runs against
staging under uvicorn and is driven over HTTP, as a client would. Every step checks what it
shows; the demo exits non-zero as soon as one does not behave.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import psycopg2
from psycopg2 import sql

from dbsync.errors import DbSyncError
from dbsync.settings import SyncSettings
from dbsync.sync import sync_databases
from localdev.oldsync import replicate_like_old_sync_dsn
from localdev.pgserver import LocalServer, admin_execute, exit_on_sigterm
from localdev.sampledata import build_prod

ROOT = Path(__file__).resolve().parents[1]
NOT_NULL = 'null value in column "id" of relation "books"'
RULES_FILE = ROOT / "backend" / "sync-rules.yaml"
BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") \
    if sys.stdout.isatty() else ("",) * 5


class DemoFailed(Exception):
    pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailed(what)
    print(f"   {GREEN}ok{RESET} {what}")


_step = 0


def step(title: str) -> None:
    global _step
    _step += 1
    print(f"\n{BOLD}{_step}. {title}{RESET}")


def say(text: str) -> None:
    print(textwrap.indent(textwrap.fill(text, 96), "   "))


def show(text: str) -> None:
    print(textwrap.indent(text.rstrip(), f"   {DIM}|{RESET} "))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(dsn: str, statement: str, params=()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def next_book_id(dsn: str) -> int:
    """What prod's next INSERT into books gets: its sequence's next value, without consuming it."""
    (row,) = query(dsn, "SELECT last_value, is_called FROM books_id_seq")
    return row[0] + 1 if row[1] else row[0]


class Api:
    """The real app under uvicorn in a child process, configured through the environment only."""

    def __init__(self, env: dict[str, str], workdir: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "api.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-access-log"],
            cwd=ROOT / "backend", env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.base, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise DemoFailed(f"the API exited at start-up:\n{self.log_path.read_text()[-2000:]}")
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise DemoFailed("the API did not answer /health within 60 s")
            time.sleep(0.2)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def post_book(self, title: str) -> httpx.Response:
        return self.client.post("/api/v1/books", json={"title": title, "owner_id": 1,
                                                       "metadata": {"source": "make demo"}})

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _logged_errors(text: str) -> list[dict]:
    """The API's JSON log records that carry the original database error."""
    found = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and NOT_NULL in str(record.get("error", "")):
            found.append(record)
    return found


def show_insert_failure(api: Api, title: str) -> None:
    seen = len(api.log())
    r = api.post_book(title)
    show(f"POST /api/v1/books -> {r.status_code} {r.text}")
    expect(r.status_code == 500, "the INSERT fails (500; the API keeps the driver's text for its log)")
    logged = _logged_errors(api.log()[seen:])
    expect(bool(logged), f"the API's log has the original error: {NOT_NULL} violates not-null constraint")
    show("API log: " + json.dumps({k: v for k, v in logged[0].items()
                                   if k in ("level", "message", "error", "sqlstate", "path")}))


def insert_works(api: Api, title: str, expected_id: int) -> dict:
    r = api.post_book(title)
    show(f"POST /api/v1/books -> {r.status_code} {r.text[:160]}")
    expect(r.status_code == 201, "the INSERT works (201 Created)")
    book = r.json()
    expect(book["id"] == expected_id, f"the new book's id is {expected_id}")
    return book


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dbsync.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def break_staging(server: LocalServer, prod_dsn: str, staging_dsn: str) -> None:
    """(Re)build staging from prod exactly as the old sync did."""
    admin_execute(staging_dsn, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    replicate_like_old_sync_dsn(prod_dsn, staging_dsn)


def demo(server: LocalServer, workdir: Path) -> list[str]:
    summary: list[str] = []
    step("An embedded PostgreSQL 18 with a prod and a staging database")
    admin = server.dsn("postgres")
    for name in ("books_prod", "books_staging"):
        admin_execute(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    prod_dsn = server.dsn("books_prod", via="127.0.0.1")
    staging_dsn = server.dsn("books_staging", via="127.0.0.1")
    conn = psycopg2.connect(prod_dsn)
    try:
        counts = build_prod(conn, scale=0.001)
    finally:
        conn.close()
    say("prod: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    prod_next = next_book_id(prod_dsn)
    (data_max,) = query(prod_dsn, "SELECT max(id) FROM books")[0]
    say(f"prod's highest book id is {data_max}; its sequence hands out {prod_next} next")
    break_staging(server, prod_dsn, staging_dsn)
    (default,) = query(staging_dsn, "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN "
                                    "pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                                    "WHERE a.attrelid = 'books'::regclass AND a.attname = 'id'")[0]
    (n_seq,) = query(staging_dsn, "SELECT count(*) FROM pg_sequences WHERE schemaname = 'public'")[0]
    say("staging, as the old sync left it: every row copied, but no sequence and no nextval() default")
    expect(default is None and n_seq == 0, f"staging's books.id has no default and staging has {n_seq} sequences")

    step("The book API, running against staging")
    env = {"DATABASE_URL": staging_dsn, "LOCK_TIMEOUT": "10s"}
    # admin-route:begin
    import secrets

    admin_key = secrets.token_urlsafe(24)
    env["ADMIN_API_KEY"] = admin_key
    env["STAGE"] = "staging"
    # admin-route:end
    api = Api(env, workdir)
    try:
        say(f"uvicorn app.main:app on {api.base} (the same app Lambda runs through Mangum)")
        health = api.client.get("/health")
        expect(health.status_code == 200, f"GET /health -> {health.status_code} {health.text}")

        step("The bug: creating a book on staging fails")
        show_insert_failure(api, "Written on a broken staging")
        summary.append("the old sync's staging refuses every INSERT: " + NOT_NULL)
        # admin-route:begin

        step("Stop-gap: repair staging through the temporary admin route")
        r = api.client.post("/api/v1/admin/reset-sequences", headers={"X-API-Key": "not-the-key"})
        show(f"POST /api/v1/admin/reset-sequences (wrong key) -> {r.status_code} {r.text}")
        expect(r.status_code == 401, "a wrong key is refused with 401")
        say("curl -X POST -H 'X-API-Key: ...' " + api.base + "/api/v1/admin/reset-sequences")
        r = api.client.post("/api/v1/admin/reset-sequences", headers={"X-API-Key": admin_key})
        expect(r.status_code == 200, f"the admin call answers 200 (got {r.status_code})")
        report = r.json()
        show(json.dumps(report["counts"]))
        for s in report["sequences"]:
            show(f"{s['table']}.{s['column']}: {s['action']}, next value {s['value']} ({s['sequence']})")
        books_row = next(s for s in report["sequences"] if s["table"].endswith("books") and s["column"] == "id")
        expect(report["counts"]["error"] == 0, "no column ended in error")
        expect(books_row["value"] == data_max + 1, f"books.id will continue at {data_max + 1}")
        insert_works(api, "Written after the admin repair", data_max + 1)
        done = ", ".join(f"{n} {action}" for action, n in report["counts"].items() if n)
        summary.append(f"the admin route repaired staging with one authenticated call ({done})")

        step("Back to the broken staging, to show the permanent fix on its own")
        break_staging(server, prod_dsn, staging_dsn)
        show_insert_failure(api, "Written on a broken staging again")
        # admin-route:end

        step("Meanwhile prod moves on")
        conn = psycopg2.connect(prod_dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO books (title, owner_id) SELECT 'New in prod ' || i, 1"
                            " FROM generate_series(1, 3) i")
        finally:
            conn.close()
        prod_next = next_book_id(prod_dsn)
        (prod_books,) = query(prod_dsn, "SELECT count(*) FROM books")[0]
        say(f"3 books added in prod: prod now has {prod_books} books and its next book id is {prod_next}")

        step("The permanent fix: the new db_sync copies prod into staging, sequences included, personal data masked")
        say("dbsync.sync.sync_databases(prod, staging, rules=backend/sync-rules.yaml):"
            " what the db_sync Lambda and `db-sync sync` run")
        def progress(event: dict) -> None:
            if event.get("event") == "table_done":
                show(f"copied {event['table']}: {event['rows']} rows, {event['bytes']} bytes")

        started = time.monotonic()
        try:
            # The Lambda's settings, as `db-sync sync --rules` gives them: SYNC_RULES_FILE and the key.
            settings = SyncSettings.load(sync_rules_file=str(RULES_FILE),
                                         sync_masking_key="demo key: use SYNC_MASKING_KEY_SECRET_ARN when deployed")
            result = sync_databases(prod_dsn, staging_dsn, progress=progress, rules=settings.rules(),
                                    masking_key=settings.masking_key())
        except DbSyncError as exc:
            raise DemoFailed(f"the sync failed: {exc}") from None
        took = time.monotonic() - started
        expect(result["ok"] and result["validation"]["ok"],
               f"the sync committed in {took:.1f} s; row counts match prod's (same snapshot)")
        reset = result["sequences_reset"]
        for s in reset:
            show(f"{s['table']}.{s['column']}: {s['action']}, next value {s['value']} ({s['sequence']})")
        books_seq = next(s for s in reset if s["table"].endswith("books") and s["column"] == "id")
        expect(books_seq["value"] == prod_next, f"staging's books.id continues where prod's does ({prod_next})")
        summary.append(f"the new sync copied prod and set {len(reset)} sequence-fed columns in {took:.1f} s")
        masked = result["masking"]["masked_columns"]
        prod_emails = {e for (e,) in query(prod_dsn, "SELECT email FROM users")}
        staged = query(staging_dsn, "SELECT email, display_name FROM users ORDER BY id LIMIT 2")
        for email, name in staged:
            show(f"a staging user: {email}, {name}")
        leaked = [e for (e,) in query(staging_dsn, "SELECT email FROM users") if e in prod_emails]
        expect(not leaked and all(e.endswith("@example.com") for e, _ in staged),
               f"no prod email reached staging; masked: {', '.join(masked)}")
        summary.append(f"personal data masked inside the copy ({len(masked)} columns); no prod email on staging")

        step("Staging works after the sync, through the API")
        book = insert_works(api, "Written after the new sync", prod_next)
        listing = api.client.get("/api/v1/books", params={"limit": 1}).json()
        expect(listing["total"] == prod_books + 1, f"staging has prod's {prod_books} books plus the new one")
        fetched = api.client.get(f"/api/v1/books/{book['id']}")
        expect(fetched.status_code == 200 and fetched.json()["title"] == book["title"], "the new book reads back")
        check = run_cli("check-sequences", "--dsn", staging_dsn)
        show(check.stdout)
        expect(check.returncode == 0, "db-sync check-sequences finds staging clean (what CI asks the Lambda)")
        summary.append(f"after the sync, POST /api/v1/books returns 201 with id {book['id']}, right after prod's data")
    finally:
        api.stop()
    return summary


def main() -> int:
    print(f"{BOLD}make demo: refresh a staging PostgreSQL from prod so that staging keeps working{RESET}")
    workdir = Path(tempfile.mkdtemp(prefix="dbsync-demo-"))
    exit_on_sigterm()
    server = LocalServer()
    try:
        server.start()
        summary = demo(server, workdir)
    except DemoFailed as exc:
        print(f"\n{RED}{BOLD}DEMO FAILED:{RESET} {exc}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{BOLD}Summary{RESET}")
    for line in summary:
        print(f" - {line}")
    print(f"{GREEN}All steps behaved as expected.{RESET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
