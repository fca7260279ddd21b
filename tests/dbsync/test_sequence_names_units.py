"""serial_name: the sequence name PostgreSQL gives a serial column, computed without a server
(tests/dbsync/test_sequences.py checks it against a real one for long names)."""

from __future__ import annotations

import pytest

from dbsync.sequences import serial_name

NAMEDATALEN = 64  # PostgreSQL's default: names hold at most 63 bytes


def test_short_names_are_table_column_seq():
    assert serial_name("books", "id") == "books_id_seq"
    assert serial_name("Book Reviews", "Id") == "Book Reviews_Id_seq"  # no quoting: it is the name itself
    assert serial_name("books", "id", label="pkey") == "books_id_pkey"


def test_a_long_table_name_is_cut_to_fit_63_bytes():
    name = serial_name("a" * 60, "id")
    assert name == "a" * 56 + "_id_seq"
    assert len(name.encode()) == NAMEDATALEN - 1


def test_the_longer_part_is_shortened_first_then_both_in_turn():
    assert serial_name("t" * 60, "c" * 10) == "t" * 48 + "_" + "c" * 10 + "_seq"
    name = serial_name("t" * 40, "c" * 40)
    assert name == "t" * 29 + "_" + "c" * 29 + "_seq"
    assert len(name.encode()) == NAMEDATALEN - 1
    assert serial_name("t" * 40, "c" * 41) == "t" * 29 + "_" + "c" * 29 + "_seq"
    # On a tie the column gives way (57 bytes for both parts beside "_pkey": one byte too many).
    assert serial_name("t" * 29, "c" * 29, label="pkey") == "t" * 29 + "_" + "c" * 28 + "_pkey"


def test_exactly_at_the_limit_nothing_is_cut():
    assert serial_name("a" * 56, "id") == "a" * 56 + "_id_seq"
    assert serial_name("a" * 57, "id") == "a" * 56 + "_id_seq"


@pytest.mark.parametrize("table", ["é" * 40, "x" + "é" * 40, "日本語のテーブル" * 4, "a" + "🦀" * 20])
def test_multibyte_names_are_cut_in_bytes_never_inside_a_character(table):
    name = serial_name(table, "id")
    assert len(name.encode()) <= NAMEDATALEN - 1
    assert name.endswith("_id_seq")
    kept = name.removesuffix("_id_seq")
    assert table.startswith(kept) and kept  # a prefix of whole characters
    # As many whole characters as fit in the table part's 56 bytes.
    assert len(kept.encode()) <= 56 < len(table[:len(kept) + 1].encode())


def test_an_odd_byte_boundary_drops_the_partial_character():
    # 1 + 27 × 2 = 55 bytes fit, the 28th "é" would end at byte 57.
    assert serial_name("x" + "é" * 40, "id") == "x" + "é" * 27 + "_id_seq"
