"""What the tests of the temporary admin route share: its path and key, and the database state a
repair changes. (Deleted with the route, by its teardown.)"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

from tests.support.api import LambdaClient

PATH = "/api/v1/admin/reset-sequences"
KEY = "staging-repair-key-3f9c1e7a5b"
UNAUTHORIZED = {"detail": "missing or invalid API key"}


def db_state(dsn: str):
    """Column defaults/identity and every sequence with its position: what a repair changes."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid), a.attidentity"
                " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0"
                "   AND NOT a.attisdropped ORDER BY 1, 2")
            columns = cur.fetchall()
            cur.execute("SELECT schemaname, sequencename, last_value, start_value FROM pg_sequences ORDER BY 1, 2")
            sequences = cur.fetchall()
    finally:
        conn.close()
    return columns, sequences


def max_id(dsn: str, table: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(table)))
            return cur.fetchone()[0]
    finally:
        conn.close()


def assert_insert_still_broken(client: LambdaClient) -> None:
    r = client.post("/api/v1/books", body={"title": "still broken?"})
    assert r.status_code == 500, r.text
    assert r.json() == {"detail": "the database refused the request; see the API's logs"}
