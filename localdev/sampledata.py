"""The book-collection "prod": the app's migrations, an API role with grants, generated rows.

Rows are generated server-side with generate_series, so a large scale costs no client memory.
Some rows are deleted afterwards so that, as in a real prod, sequences stand past the data.
"""

from __future__ import annotations

from psycopg2 import sql

API_ROLE = "book_api"

# Rows per table at scale 1 (about 150 MB on disk with indexes).
BASE_ROWS = {"users": 40_000, "authors": 15_000, "books": 155_000, "reviews": 470_000}


def ensure_role(conn, role: str = API_ROLE) -> None:
    """Roles are cluster-wide and may exist already (another test database made it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    conn.commit()


def create_schema(conn) -> None:
    from app.migrate import apply_migrations

    ensure_role(conn)
    apply_migrations(conn)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r};"
                "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}"
            ).format(r=sql.Identifier(API_ROLE))
        )
    conn.commit()


def populate(conn, scale: float = 0.001) -> dict[str, int]:
    """Fill the schema; returns rows per table. scale=1 is about 150 MB."""
    n = {k: max(3, int(v * scale)) for k, v in BASE_ROWS.items()}
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO users (email, display_name)"
            " SELECT 'reader' || i || '@example.com', 'Reader ' || i FROM generate_series(1, %s) i",
            (n["users"],),
        )
        cur.execute(
            "INSERT INTO authors (name, born)"
            " SELECT 'Author ' || i, 1850 + i %% 150 FROM generate_series(1, %s) i",
            (n["authors"],),
        )
        cur.execute(
            "INSERT INTO books (title, isbn, published_year, metadata, owner_id)"
            " SELECT 'Book ' || i, 'isbn-' || i, 1900 + i %% 125,"
            "  jsonb_build_object('pages', 100 + i %% 700, 'language', (ARRAY['en','fr','de','es'])[1 + i %% 4],"
            "                     'tags', jsonb_build_array('tag' || i %% 17, 'tag' || i %% 31),"
            "                     'summary', repeat('A tale of ' || i || '. ', 1 + i %% 5)),"
            "  1 + (i::bigint * 7919) %% %s"
            " FROM generate_series(1, %s) i",
            (n["users"], n["books"]),
        )
        cur.execute(
            "INSERT INTO book_authors (book_id, author_id)"
            " SELECT b, (1 + (b::bigint * 31) %% %s)::int FROM generate_series(1, %s) b"
            " UNION SELECT b, (1 + (b::bigint * 17 + 5) %% %s)::int FROM generate_series(1, %s, 3) b",
            (n["authors"], n["books"], n["authors"], n["books"]),
        )
        cur.execute(
            "INSERT INTO reviews (book_id, user_id, rating, body)"
            " SELECT (1 + (i::bigint * 13) %% %s)::int, 1 + (i::bigint * 29) %% %s, 1 + i %% 5,"
            "  'Review number ' || i || ': ' || repeat('good ', i %% 20)"
            " FROM generate_series(1, %s) i",
            (n["books"], n["users"], n["reviews"]),
        )
        # Deleted rows leave each sequence past its data, as a real prod's are.
        cur.execute("DELETE FROM reviews WHERE id > (SELECT max(id) - 2 FROM reviews)")
        cur.execute(
            "DELETE FROM books WHERE id = (SELECT max(id) FROM books)"
            " AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.book_id = books.id)"
        )
        counts = {}
        for table in ("users", "authors", "books", "book_authors", "reviews"):
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            counts[table] = cur.fetchone()[0]
    conn.commit()
    return counts


def build_prod(conn, scale: float = 0.001) -> dict[str, int]:
    create_schema(conn)
    return populate(conn, scale)
