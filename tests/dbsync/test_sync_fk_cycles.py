"""The incremental refresh holds every foreign key — cycles, tables referencing themselves, parents
copied in full — and counts right under ON DELETE CASCADE and SET NULL: on a real PostgreSQL,
nights of prod changes, each ending identical to a full sync of the same state, with no fallback
to a full sync."""

from __future__ import annotations

from dbsync.sync import delta, sync_databases
from tests.support.db import execute
from tests.support.nights import modes, night, prod_and_stagings, while_reading

DELTA_MODES = {"delta", "unchanged", "full"}  # full: only by the share-changed threshold (modes())


def _no_fallback(result: dict) -> dict[str, str]:
    assert "fallback" not in result, result.get("fallback")
    assert result["validation"]["ok"]
    found = modes(result)
    assert set(found.values()) <= DELTA_MODES, found
    return found


# A two-table cycle, a parent hanging off it and a child of that parent whose name sorts first:
# ordered by name, the child came before its parent and deletes ran parents first, so a cascade
# took the child's rows before its own DELETE and the derived count was off.
CYCLE = (
    "CREATE TABLE m_left (id int PRIMARY KEY, right_id int, note text)",
    "CREATE TABLE m_right (id int PRIMARY KEY, left_id int NOT NULL REFERENCES m_left ON DELETE CASCADE, note text)",
    "ALTER TABLE m_left ADD FOREIGN KEY (right_id) REFERENCES m_right ON DELETE SET NULL",
    "CREATE TABLE p_hang (id int PRIMARY KEY, left_id int NOT NULL REFERENCES m_left ON DELETE CASCADE, note text)",
    "CREATE TABLE a_child (id int PRIMARY KEY, p_id int NOT NULL REFERENCES p_hang ON DELETE CASCADE, note text)",
)
CYCLE_ROWS = (
    "INSERT INTO m_left SELECT g, NULL, 'l' || g FROM generate_series(1, 200) g",
    "INSERT INTO m_right SELECT g, g, 'r' || g FROM generate_series(1, 200) g",
    "UPDATE m_left SET right_id = id",
    "INSERT INTO p_hang SELECT g, g % 200 + 1, 'p' || g FROM generate_series(1, 400) g",
    "INSERT INTO a_child SELECT g, g % 400 + 1, 'a' || g FROM generate_series(1, 800) g",
)


def test_a_cycle_with_a_parent_hanging_off_it_and_its_child(make_db):
    prod, full, inc = prod_and_stagings(make_db, CYCLE, CYCLE_ROWS)
    # Deletes that cascade through the cycle to the parent hanging off it and on to its child.
    result = night(prod, full, inc, (
        "UPDATE a_child SET note = 'edited' WHERE id % 40 = 0",
        "UPDATE m_right SET note = 'edited' WHERE id % 30 = 0",
        "DELETE FROM m_left WHERE id IN (7, 8)",
        "DELETE FROM p_hang WHERE id = 50",
    ), (
        "INSERT INTO p_hang VALUES (9001, 7, 'a tester''s parent')",
        "INSERT INTO a_child VALUES (9001, 9001, 'a tester''s child'), (9002, 10, 'another')",
        "UPDATE m_left SET note = 'staging edit' WHERE id = 3",
    ))
    found = _no_fallback(result)
    assert found == {"a_child": "delta", "m_left": "delta", "m_right": "delta", "p_hang": "delta"}
    # New rows in the cycle referencing each other, an old row pointing at a new one, new rows
    # referencing new parents, and deletes again.
    result = night(prod, full, inc, (
        "INSERT INTO m_left VALUES (201, NULL, 'new'), (202, NULL, 'new')",
        "INSERT INTO m_right VALUES (201, 201, 'new'), (202, 202, 'new')",
        "UPDATE m_left SET right_id = id WHERE id > 200",
        "UPDATE m_left SET right_id = 202 WHERE id = 1",
        "INSERT INTO p_hang VALUES (401, 201, 'new'), (402, 202, 'new')",
        "INSERT INTO a_child VALUES (801, 401, 'new'), (802, 402, 'new')",
        "UPDATE a_child SET p_id = 402 WHERE id = 15",
        "DELETE FROM m_right WHERE id = 20",
        "DELETE FROM p_hang WHERE id = 60",
    ), (
        "DELETE FROM a_child WHERE id = 12",
        "UPDATE m_right SET note = 'staging' WHERE id = 4",
    ))
    assert _no_fallback(result) == {"a_child": "delta", "m_left": "delta", "m_right": "delta", "p_hang": "delta"}
    assert {t["table"]: t["found"] for t in result["tables"]}["public.a_child"] == "since the last sync"


def test_readers_never_wait_while_a_cycle_is_applied(make_db):
    prod, _, inc = prod_and_stagings(make_db, CYCLE, CYCLE_ROWS)
    execute(prod, "INSERT INTO m_left VALUES (201, NULL, 'new')", "INSERT INTO m_right VALUES (201, 201, 'new')",
            "UPDATE m_left SET right_id = 201 WHERE id IN (1, 201)", "DELETE FROM m_left WHERE id = 9")
    result, failures, reads = while_reading(inc, ("m_left", "m_right", "p_hang", "a_child"),
                                            lambda: sync_databases(prod, inc, incremental=True))
    assert failures == [] and reads > 0
    assert _no_fallback(result)["m_left"] == "delta"


FULL_PARENT = (
    "CREATE TABLE parent (id int PRIMARY KEY, name text NOT NULL)",
    "CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent ON DELETE CASCADE, note text)",
)
FULL_PARENT_ROWS = (
    "INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 100) g",
    "INSERT INTO child SELECT g, g % 100 + 1, 'c' || g FROM generate_series(1, 1000) g",
)


def test_a_parent_copied_in_full_and_its_child_applied_as_a_delta(make_db):
    """The full copy's foreign keys are set aside before the deltas are applied: the child's new
    rows reference parent rows that only the full copy brings (applied before it, they failed)."""
    prod, full, inc = prod_and_stagings(make_db, FULL_PARENT, FULL_PARENT_ROWS)
    result = night(prod, full, inc, (
        "UPDATE parent SET name = name || ' v2' WHERE id % 3 = 0",
        "INSERT INTO parent SELECT g, 'new ' || g FROM generate_series(101, 105) g",
        "INSERT INTO child SELECT g, 100 + g % 5 + 1, 'new' FROM generate_series(1001, 1010) g",
        "UPDATE child SET note = 'edited', parent_id = 103 WHERE id % 50 = 0",
        "DELETE FROM child WHERE id % 89 = 0",
    ), ("INSERT INTO child VALUES (5000, 3, 'a tester''s row')",))
    assert _no_fallback(result) == {"parent": "full", "child": "delta"}
    # The other way round: the child copied in full, the parent a delta deleting rows the child's
    # staging-only row still references (its foreign key is set aside with the child's full copy).
    result = night(prod, full, inc, (
        "UPDATE child SET note = 'bulk' WHERE id % 2 = 0",
        "DELETE FROM parent WHERE id IN (101, 102)",
        "UPDATE parent SET name = 'renamed' WHERE id = 5",
        "INSERT INTO parent VALUES (106, 'newer')",
    ), ("INSERT INTO child VALUES (5001, 101, 'a tester''s row')",))
    assert _no_fallback(result) == {"parent": "delta", "child": "full"}


COUNTS = (
    "CREATE TABLE x_cycle (id int PRIMARY KEY, y_id int, note text)",
    "CREATE TABLE y_cycle (id int PRIMARY KEY, x_id int REFERENCES x_cycle ON DELETE CASCADE, note text)",
    "ALTER TABLE x_cycle ADD FOREIGN KEY (y_id) REFERENCES y_cycle ON DELETE SET NULL",
    "CREATE TABLE a_cascade (id int PRIMARY KEY, x_id int NOT NULL REFERENCES x_cycle ON DELETE CASCADE, note text)",
    "CREATE TABLE b_setnull (id int PRIMARY KEY, x_id int REFERENCES x_cycle ON DELETE SET NULL, note text)",
    "CREATE TABLE tree (id int PRIMARY KEY, parent_id int REFERENCES tree ON DELETE CASCADE, note text)",
)
COUNTS_ROWS = (
    "INSERT INTO x_cycle SELECT g, NULL, 'x' || g FROM generate_series(1, 100) g",
    "INSERT INTO y_cycle SELECT g, g, 'y' || g FROM generate_series(1, 100) g",
    "UPDATE x_cycle SET y_id = id",
    "INSERT INTO a_cascade SELECT g, g % 100 + 1, 'a' || g FROM generate_series(1, 400) g",
    "INSERT INTO b_setnull SELECT g, g % 100 + 1, 'b' || g FROM generate_series(1, 400) g",
    "INSERT INTO tree SELECT g, CASE WHEN g > 10 THEN g / 10 END, 't' || g FROM generate_series(1, 300) g",
)


def _deleted(result: dict) -> dict[str, int]:
    return {t["table"].removeprefix("public."): t["rows_deleted"] for t in result["tables"] if t["mode"] == "delta"}


def test_counts_under_on_delete_cascade_and_set_null(make_db):
    """Staging's count after a delta is derived from the keys deleted: rows a cascade from another
    table's DELETE removed first still count, and rows SET NULL end as prod has them."""
    prod, full, inc = prod_and_stagings(make_db, COUNTS, COUNTS_ROWS)
    result = night(prod, full, inc, (
        "DELETE FROM x_cycle WHERE id IN (3, 4)",  # cascades to y and a_cascade, sets b_setnull's NULL
        "DELETE FROM tree WHERE id = 25",  # and its ten children
        "UPDATE b_setnull SET note = 'kept' WHERE id % 50 = 0",
    ), (
        "INSERT INTO b_setnull VALUES (9001, 3, 'a tester''s row')",  # staging's own: NULL, then deleted
        "INSERT INTO a_cascade VALUES (9001, 4, 'a tester''s row')",  # cascaded before its own DELETE
    ))
    assert _no_fallback(result) == {"a_cascade": "delta", "b_setnull": "delta", "tree": "delta", "x_cycle": "delta",
                                    "y_cycle": "delta"}
    assert _deleted(result) == {"a_cascade": 9, "b_setnull": 1, "tree": 11, "x_cycle": 2, "y_cycle": 2}
    result = night(prod, full, inc, (
        "INSERT INTO x_cycle VALUES (101, NULL, 'new'), (102, NULL, 'new')",
        "INSERT INTO y_cycle VALUES (101, 102, 'new'), (102, 101, 'new')",  # across the new pair
        "UPDATE x_cycle SET y_id = 203 - id WHERE id > 100",
        "INSERT INTO a_cascade VALUES (401, 101, 'new'), (402, 102, 'new')",
        "INSERT INTO tree VALUES (301, NULL, 'new root'), (302, 301, 'new child')",
        "UPDATE tree SET parent_id = 302 WHERE id = 7",  # an old row under a new one
        "DELETE FROM y_cycle WHERE id = 10",  # x_cycle 10's y_id set NULL
        "DELETE FROM x_cycle WHERE id = 11",
    ), ("UPDATE b_setnull SET x_id = 11 WHERE id = 1",))
    assert _no_fallback(result) == {"a_cascade": "delta", "b_setnull": "delta", "tree": "delta", "x_cycle": "delta",
                                    "y_cycle": "delta"}
    assert _deleted(result) == {"a_cascade": 4, "b_setnull": 0, "tree": 0, "x_cycle": 1, "y_cycle": 2}


def test_a_conflict_carries_its_table(make_db, monkeypatch):
    """Two rows swap a unique value: the delta breaks the constraint, the run falls back to a full
    sync, and the DeltaConflict it raised names the table in an attribute, not only in its text."""
    prod, full, inc = prod_and_stagings(make_db, ("CREATE TABLE people (id int PRIMARY KEY, email text UNIQUE)",),
                                        ("INSERT INTO people SELECT g, 'p' || g FROM generate_series(1, 50) g",))
    raised = []
    real = delta.DeltaConflict.__init__

    def record(self, message, **where):
        real(self, message, **where)
        raised.append(self)

    monkeypatch.setattr(delta.DeltaConflict, "__init__", record)
    result = night(prod, full, inc, ("UPDATE people SET email = 'spare' WHERE id = 1",
                                     "UPDATE people SET email = 'p1' WHERE id = 2",
                                     "UPDATE people SET email = 'p2' WHERE id = 1"))
    assert "broke a constraint" in result["fallback"]
    assert [c.table for c in raised] == ["public.people"]


# d_child's key into `other` is set aside (other is copied in full) and re-added by ALTER TABLE.
DEFERRED = ("CREATE TABLE other (id int PRIMARY KEY, v int)",
            "CREATE TABLE d_parent (id int PRIMARY KEY, name text)",
            "CREATE TABLE d_child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES d_parent"
            " DEFERRABLE INITIALLY DEFERRED, other_id int REFERENCES other, note text)")
DEFERRED_ROWS = ("INSERT INTO other SELECT g, g FROM generate_series(1, 10) g",
                 "INSERT INTO d_parent SELECT g, 'p' || g FROM generate_series(1, 100) g",
                 "INSERT INTO d_child SELECT g, g % 100 + 1, g % 10 + 1, 'c' FROM generate_series(1, 400) g")


def test_keys_declared_deferrable_initially_deferred(make_db):
    """Checked before the foreign keys set aside are re-added: a pending deferred check would make
    that ALTER TABLE refuse ("pending trigger events"), as it did on danbooru's schema."""
    prod, full, inc = prod_and_stagings(make_db, DEFERRED, DEFERRED_ROWS)
    for n in (1, 2):
        result = night(prod, full, inc, (
            f"INSERT INTO d_parent VALUES ({1000 + n}, 'new')",  # noqa: S608 - the test's own literals
            f"INSERT INTO d_child VALUES ({1000 + n}, {1000 + n}, 1, 'new')",  # noqa: S608 - the test's own literals
            f"DELETE FROM d_child WHERE id % 97 = {n}",  # noqa: S608 - the test's own literals
            f"UPDATE d_child SET note = 'n{n}' WHERE id % 50 = {n}",  # noqa: S608 - the test's own literals
            "UPDATE other SET v = v + 1",  # every row: copied in full, its keys set aside and re-added
        ))
        assert _no_fallback(result)["d_child"] == "delta" and _no_fallback(result)["other"] == "full"
