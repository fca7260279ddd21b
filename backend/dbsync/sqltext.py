"""The one door through which text made at run time becomes SQL.

Everything else is composed from constant psycopg2.sql templates, sql.Identifier and sql.Literal.
What comes here as text is named for how far it is trusted, so that a reviewer reads one module
to know every way text reaches the server:

- `deparsed`: written by the server itself and read from its catalog — pg_get_indexdef,
  pg_get_constraintdef, pg_get_expr — PostgreSQL's own rendering of objects that exist;
- `type_name`: a type as format_type() renders it (deparsed too), for casts and column lists;
- `fragment`: a rules file's `sql:` or `where:` expression — the user's code, reviewed like
  code, and checked before it gets here: tokenized as one expression (dbsync.masking.fragments),
  parsed by prod's server in place and proved IMMUTABLE by staging's (dbsync.masking.immutable);
- `migration`: one of the API's own migration files, part of this repository.
"""

from __future__ import annotations

from psycopg2 import sql


def deparsed(text: str) -> sql.SQL:
    """SQL the server wrote: a definition or expression read from pg_catalog."""
    return sql.SQL(text)


def type_name(text: str) -> sql.SQL:
    """A type as format_type() wrote it (`character varying(40)`, `public.mood`, `integer[]`)."""
    return sql.SQL(text)


def fragment(text: str) -> sql.SQL:
    """A rules file's expression, checked before it comes here (see the module docstring)."""
    return sql.SQL(text)


def migration(text: str) -> sql.SQL:
    """A migration file of the API's own (backend/app/migrations)."""
    return sql.SQL(text)
