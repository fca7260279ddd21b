"""The book collection: list (paginated), get, create, update, delete."""

from __future__ import annotations

from typing import Annotated

import psycopg2
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from psycopg2 import sql
from psycopg2.extras import Json, RealDictCursor

from app.api.deps import DatabaseDep
from app.core.db import Database
from app.models.books import MAX_ID, Book, BookCreate, BookPage, BookUpdate
from app.models.errors import ErrorBody

router = APIRouter()  # mounted at /api/v1/books by app.api.main

_COLUMNS = sql.SQL(", ").join(map(sql.Identifier, Book.model_fields))

BookId = Annotated[int, Path(ge=1, le=MAX_ID, description="the book's id")]

_NOT_FOUND = {404: {"model": ErrorBody, "description": "no book with this id"}}
_WRITE_ERRORS = {
    409: {"model": ErrorBody, "description": "another book has this isbn"},
    500: {"model": ErrorBody, "description": "the database refused the write (see the logs)"},
    503: {"model": ErrorBody, "description": "the database is unreachable or busy; try again"},
}


def _values(fields: dict) -> dict:
    return {k: Json(v) if k == "metadata" else v for k, v in fields.items()}


def _write(db: Database, query: sql.Composable, params: dict) -> dict | None:
    """Run an INSERT/UPDATE ... RETURNING; the caller's mistakes become 409/422, anything else
    (such as the not-null failure of a staging whose `id` default was lost) propagates to the
    app's handler, which answers 500 without the driver's text."""

    def work(conn):
        with conn.cursor(cursor_factory=RealDictCursor) as cur:
            cur.execute(query, params)
            return cur.fetchone()

    try:
        return db.run(work)
    except psycopg2.errors.UniqueViolation as exc:
        if exc.diag.constraint_name == "books_isbn_key":
            raise HTTPException(status.HTTP_409_CONFLICT, f"a book with isbn {params['isbn']!r} exists") from None
        raise
    except psycopg2.errors.ForeignKeyViolation as exc:
        if exc.diag.constraint_name == "books_owner_id_fkey":
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"owner_id {params['owner_id']} is not a user") from None
        raise


@router.get("", response_model=BookPage, summary="List books, oldest first")
def list_books(db: DatabaseDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
               offset: Annotated[int, Query(ge=0, le=2**62)] = 0) -> BookPage:
    def work(conn):
        with conn.cursor(cursor_factory=RealDictCursor) as cur:
            cur.execute(sql.SQL("SELECT {} FROM books ORDER BY id LIMIT %s OFFSET %s").format(_COLUMNS),
                        (limit, offset))
            rows = cur.fetchall()
            cur.execute("SELECT count(*) AS n FROM books")
            return rows, cur.fetchone()["n"]

    rows, total = db.run(work)
    return BookPage(items=[Book(**r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{book_id}", response_model=Book, responses=_NOT_FOUND)
def get_book(book_id: BookId, db: DatabaseDep) -> Book:
    def work(conn):
        with conn.cursor(cursor_factory=RealDictCursor) as cur:
            cur.execute(sql.SQL("SELECT {} FROM books WHERE id = %s").format(_COLUMNS), (book_id,))
            return cur.fetchone()

    row = db.run(work)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no book with id {book_id}")
    return Book(**row)


@router.post("", response_model=Book, status_code=status.HTTP_201_CREATED, responses=_WRITE_ERRORS)
def create_book(body: BookCreate, db: DatabaseDep, request: Request, response: Response) -> Book:
    fields = body.model_dump()
    query = sql.SQL("INSERT INTO books ({}) VALUES ({}) RETURNING {}").format(
        sql.SQL(", ").join(map(sql.Identifier, fields)),
        sql.SQL(", ").join(map(sql.Placeholder, fields)),
        _COLUMNS,
    )
    book = Book(**_write(db, query, _values(fields)))
    response.headers["Location"] = request.url_for("get_book", book_id=book.id).path
    return book


@router.patch("/{book_id}", response_model=Book, responses={**_NOT_FOUND, **_WRITE_ERRORS})
def update_book(book_id: BookId, body: BookUpdate, db: DatabaseDep) -> Book:
    fields = body.model_dump(exclude_unset=True)
    if not fields:
        return get_book(book_id, db)
    query = sql.SQL("UPDATE books SET {} WHERE id = {} RETURNING {}").format(
        sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in fields),
        sql.Placeholder("_id"),
        _COLUMNS,
    )
    row = _write(db, query, {**_values(fields), "_id": book_id})
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no book with id {book_id}")
    return Book(**row)


@router.delete("/{book_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND)
def delete_book(book_id: BookId, db: DatabaseDep) -> Response:
    def work(conn):
        with conn.cursor() as cur:
            cur.execute("DELETE FROM books WHERE id = %s RETURNING id", (book_id,))
            return cur.fetchone()

    if db.run(work) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no book with id {book_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
