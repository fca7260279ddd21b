"""The engine's rules where check-sequences and reset-sequences must agree with what PostgreSQL
does: float columns fed by a sequence, and sequences that sit below START but past every row."""

from __future__ import annotations

import pytest

from dbsync.sequences import check_sequences, reset_sequences


def run(conn, *statements):
    with conn.cursor() as cur:
        for st in statements:
            cur.execute(st)
    conn.commit()


def insert_default(conn, table: str, column: str = "id"):
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {table} DEFAULT VALUES RETURNING {column}")  # noqa: S608 - fixed test names
        value = cur.fetchone()[0]
    conn.commit()
    return value


def only(rows, table):
    [row] = [r for r in rows if r["table"] == table]
    return row


# -- float columns count like numeric ones --------------------------------------------------------

@pytest.mark.parametrize("column_type", ["double precision", "real"])
def test_a_float_column_behind_its_sequence_is_flagged_and_repaired(db, column_type):
    run(db, "CREATE SEQUENCE f_seq",
        f"CREATE TABLE f (id {column_type} PRIMARY KEY DEFAULT nextval('f_seq'), note text)",
        "INSERT INTO f (id) SELECT g FROM generate_series(1, 10) g")
    [problem] = check_sequences(db)
    assert (problem["table"], problem["previous"], problem["value"]) == ("f", 1, 11)
    assert "behind the data" in problem["problem"]
    assert only(reset_sequences(db), "f")["action"] == "reset"
    assert insert_default(db, "f") == 11
    assert check_sequences(db) == []


def test_float_nan_infinity_and_values_beyond_bigint_are_ignored(db):
    run(db, "CREATE SEQUENCE g_seq",
        "CREATE TABLE g (id float8 DEFAULT nextval('g_seq'))",
        "INSERT INTO g VALUES ('NaN'), ('Infinity'), ('-Infinity'), (1e30), (7.5), (3)")
    assert only(reset_sequences(db), "g")["value"] == 8  # past 7.5, the largest a sequence can meet
    assert insert_default(db, "g") == 8


def test_a_descending_sequence_on_a_domain_over_real(db):
    run(db, "CREATE DOMAIN score AS real",
        "CREATE SEQUENCE d_seq INCREMENT -1 MAXVALUE -1 START -1",
        "CREATE TABLE d (id score DEFAULT nextval('d_seq'))",
        "INSERT INTO d VALUES (-1), (-2), (-3.5)")
    assert only(reset_sequences(db), "d")["value"] == -4
    assert insert_default(db, "d") == -4


# -- the check flags only what fails, collides or leaves the bounds -----------------------------

def test_below_start_but_past_every_row_is_clean(db):
    """START 101, rows 1–15, next value 16: that INSERT works and collides with nothing."""
    run(db, "CREATE TABLE s (id int PRIMARY KEY)",
        "CREATE SEQUENCE s_seq START 101 MINVALUE 1 OWNED BY s.id",
        "ALTER TABLE s ALTER COLUMN id SET DEFAULT nextval('s_seq')",
        "INSERT INTO s SELECT g FROM generate_series(1, 15) g",
        "SELECT setval('s_seq', 15)")
    assert check_sequences(db) == []
    # reset-sequences keeps its START floor (documented): 101, not 16.
    assert only(reset_sequences(db, dry_run=True), "s")["value"] == 101
    assert insert_default(db, "s") == 16


def test_below_start_and_behind_a_row_is_flagged(db):
    run(db, "CREATE TABLE s (id int PRIMARY KEY)",
        "CREATE SEQUENCE s_seq START 101 MINVALUE 1 OWNED BY s.id",
        "ALTER TABLE s ALTER COLUMN id SET DEFAULT nextval('s_seq')",
        "INSERT INTO s SELECT g FROM generate_series(1, 15) g", "INSERT INTO s VALUES (40)",
        "SELECT setval('s_seq', 15)")
    [problem] = check_sequences(db)
    assert problem["previous"] == 16 and "behind the data" in problem["problem"]


def test_descending_below_start_but_past_every_row_is_clean(db):
    run(db, "CREATE TABLE s (id int PRIMARY KEY)",
        "CREATE SEQUENCE s_seq INCREMENT -1 START -101 MAXVALUE -1 OWNED BY s.id",
        "ALTER TABLE s ALTER COLUMN id SET DEFAULT nextval('s_seq')",
        "INSERT INTO s SELECT -g FROM generate_series(1, 15) g",
        "SELECT setval('s_seq', -15)")
    assert check_sequences(db) == []
    assert insert_default(db, "s") == -16


def test_an_empty_table_below_start_is_clean(db):
    run(db, "CREATE SEQUENCE e_seq START 50 MINVALUE 1",
        "CREATE TABLE e (id int PRIMARY KEY DEFAULT nextval('e_seq'))",
        "SELECT setval('e_seq', 3)")
    assert check_sequences(db) == []


def test_an_exhausted_sequence_is_flagged(db):
    run(db, "CREATE SEQUENCE x_seq MAXVALUE 3",
        "CREATE TABLE x (id int PRIMARY KEY DEFAULT nextval('x_seq'))",
        "SELECT setval('x_seq', 3)")
    [problem] = check_sequences(db)
    assert "MAXVALUE 3" in problem["problem"]


def test_a_lost_default_is_flagged_only_where_the_insert_fails(db):
    """Without its default a NOT NULL column's INSERT fails; a nullable one takes NULL and works."""
    run(db, "CREATE TABLE n (id serial PRIMARY KEY, ref serial)",
        "ALTER TABLE n ALTER COLUMN ref DROP NOT NULL",
        "ALTER TABLE n ALTER COLUMN id DROP DEFAULT", "ALTER TABLE n ALTER COLUMN ref DROP DEFAULT")
    problems = check_sequences(db)
    assert [(p["column"], "no default" in p["problem"]) for p in problems] == [("id", True)]
    assert {r["column"]: r["action"] for r in reset_sequences(db)} == {"id": "default_restored",
                                                                       "ref": "default_restored"}
