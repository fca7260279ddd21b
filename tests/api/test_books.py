"""The books API (CRUD, pagination, errors) through the Mangum handler with HTTP API v2 events."""

from __future__ import annotations

import json

import psycopg2
import pytest

from tests.support.api import LambdaClient

# client, error_logs, make_api and api_db are fixtures of tests/api/conftest.py.

BOOKS = "/api/v1/books"


def execute(dsn: str, query: str, params=()):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            rows = cur.fetchall() if cur.description else None
        conn.commit()
        return rows
    finally:
        conn.close()


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


def test_create_get_update_delete(client, api_db):
    (user_id,), = execute(api_db, "INSERT INTO users (email, display_name) VALUES ('a@b.c', 'A') RETURNING id")
    created = client.post(BOOKS, body={"title": "Dune", "isbn": "978-0441013593", "published_year": 1965,
                                       "metadata": {"pages": 412, "tags": ["sf"]}, "owner_id": user_id})
    assert created.status_code == 201, created.text
    book = created.json()
    assert book == {**book, "title": "Dune", "isbn": "978-0441013593", "published_year": 1965,
                    "metadata": {"pages": 412, "tags": ["sf"]}, "owner_id": user_id}
    assert isinstance(book["id"], int) and book["created_at"]
    assert created.headers["location"] == f"{BOOKS}/{book['id']}"
    assert execute(api_db, "SELECT title, metadata FROM books WHERE id = %s", (book["id"],)) == [
        ("Dune", {"pages": 412, "tags": ["sf"]})]

    assert client.get(f"{BOOKS}/{book['id']}").json() == book

    # PATCH changes only what is sent; null clears an optional field.
    patched = client.patch(f"{BOOKS}/{book['id']}", body={"title": "Dune (1965)", "isbn": None})
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**book, "title": "Dune (1965)", "isbn": None}
    assert client.patch(f"{BOOKS}/{book['id']}", body={}).json() == patched.json()
    assert client.patch(f"{BOOKS}/{book['id']}", body={"metadata": {}}).json()["metadata"] == {}

    deleted = client.delete(f"{BOOKS}/{book['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert client.get(f"{BOOKS}/{book['id']}").status_code == 404
    assert client.delete(f"{BOOKS}/{book['id']}").status_code == 404
    assert execute(api_db, "SELECT count(*) FROM books") == [(0,)]


def test_defaults_on_create(client):
    r = client.post(BOOKS, body={"title": "Minimal"})
    assert r.status_code == 201
    assert r.json() == {**r.json(), "isbn": None, "published_year": None, "metadata": {}, "owner_id": None}


def test_list_paginates_in_id_order(client):
    ids = [client.post(BOOKS, body={"title": f"Book {i}"}).json()["id"] for i in range(5)]
    page = client.get(BOOKS, query="limit=2").json()
    assert [b["id"] for b in page["items"]] == ids[:2]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 0)
    assert [b["id"] for b in client.get(BOOKS, query="limit=2&offset=2").json()["items"]] == ids[2:4]
    assert [b["id"] for b in client.get(BOOKS, query="limit=2&offset=4").json()["items"]] == ids[4:]
    assert client.get(BOOKS, query="offset=10").json() == {"items": [], "total": 5, "limit": 50, "offset": 10}
    assert len(client.get(BOOKS).json()["items"]) == 5


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "offset=-1"])
def test_list_rejects_bad_pagination(client, query):
    r = client.get(BOOKS, query=query)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize("path", ["0", "-1", "abc", str(2**31), "1.5"])
def test_bad_ids_are_422(client, path):
    for method in ("GET", "DELETE"):
        r = client.request(method, f"{BOOKS}/{path}")
        assert r.status_code == 422, (method, r.text)
    assert client.patch(f"{BOOKS}/{path}", body={"title": "x"}).status_code == 422


def test_unknown_ids_are_404(client):
    assert client.get(f"{BOOKS}/12345").json() == {"detail": "no book with id 12345"}
    assert client.get(f"{BOOKS}/12345").status_code == 404
    assert client.patch(f"{BOOKS}/12345", body={"title": "x"}).status_code == 404
    assert client.patch(f"{BOOKS}/12345", body={}).status_code == 404
    assert client.delete(f"{BOOKS}/12345").status_code == 404


@pytest.mark.parametrize("body", [
    {},
    {"title": ""},
    {"title": None},
    {"title": 5},
    {"title": "x", "id": 7},
    {"title": "x", "published_year": "soon"},
    {"title": "x", "metadata": [1, 2]},
    {"title": "x", "owner_id": 0},
    {"title": "x" * 501},
    "{broken json",
    "[]",
])
def test_bad_bodies_are_422_and_store_nothing(client, api_db, body):
    r = client.post(BOOKS, body=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "body"
    assert execute(api_db, "SELECT count(*) FROM books") == [(0,)]


@pytest.mark.parametrize("body", [{"title": None}, {"metadata": None}, {"title": ""}, {"id": 3}])
def test_bad_patches_are_422(client, body):
    book = client.post(BOOKS, body={"title": "Keep"}).json()
    r = client.patch(f"{BOOKS}/{book['id']}", body=body)
    assert r.status_code == 422, r.text
    assert client.get(f"{BOOKS}/{book['id']}").json() == book


def test_duplicate_isbn_is_409_and_unknown_owner_422(client):
    first = client.post(BOOKS, body={"title": "One", "isbn": "isbn-1"}).json()
    dup = client.post(BOOKS, body={"title": "Two", "isbn": "isbn-1"})
    assert dup.status_code == 409 and dup.json() == {"detail": "a book with isbn 'isbn-1' exists"}
    other = client.post(BOOKS, body={"title": "Two", "isbn": "isbn-2"}).json()
    assert client.patch(f"{BOOKS}/{other['id']}", body={"isbn": "isbn-1"}).status_code == 409
    r = client.post(BOOKS, body={"title": "Orphan", "owner_id": 999})
    assert r.status_code == 422 and r.json() == {"detail": "owner_id 999 is not a user"}
    assert client.patch(f"{BOOKS}/{first['id']}", body={"owner_id": 999}).status_code == 422
    assert client.get(BOOKS).json()["total"] == 2


def test_delete_cascades_to_reviews_and_authors(client, api_db):
    book = client.post(BOOKS, body={"title": "Reviewed"}).json()
    execute(api_db, "INSERT INTO users (email, display_name) VALUES ('r@x', 'R');"
                    "INSERT INTO authors (name) VALUES ('Au');"
                    "INSERT INTO reviews (book_id, user_id, rating) SELECT %s, id, 5 FROM users;"
                    "INSERT INTO book_authors SELECT %s, id FROM authors", (book["id"], book["id"]))
    assert client.delete(f"{BOOKS}/{book['id']}").status_code == 204
    assert execute(api_db, "SELECT (SELECT count(*) FROM reviews), (SELECT count(*) FROM book_authors)") == [(0, 0)]


def test_old_sync_staging_insert_is_a_clean_500(prod_and_staging, make_api, error_logs):
    """The bug this project fixes, as the API reports it: 500 (a fault in the server's data, not in
    the request), a short body without the driver's text, the cause in the log."""
    _, staging = prod_and_staging
    client = LambdaClient(make_api(database_url=staging))
    r = client.post(BOOKS, body={"title": "New on staging"})
    assert r.status_code == 500
    assert r.json() == {"detail": "the database refused the request; see the API's logs"}
    assert "Traceback" not in r.text
    logged = [json.loads(line) for line in error_logs]
    assert logged[-1]["error"] == 'null value in column "id" of relation "books" violates not-null constraint'
    assert logged[-1]["sqlstate"] == "23502" and logged[-1]["path"] == BOOKS
    # Reads still work on the broken staging.
    assert client.get(BOOKS, query="limit=1").status_code == 200


def test_sequence_behind_the_data_is_500_not_409(client, api_db):
    """A duplicate primary key means the sequence is behind the rows (the other face of the bug):
    not the caller's conflict, so not a 409."""
    execute(api_db, "INSERT INTO books (id, title) VALUES (1, 'copied with its id')")
    r = client.post(BOOKS, body={"title": "collides"})
    assert r.status_code == 500 and r.json() == {"detail": "the database refused the request; see the API's logs"}
    # The failed INSERT left the connection usable.
    assert client.get(f"{BOOKS}/1").json()["title"] == "copied with its id"
