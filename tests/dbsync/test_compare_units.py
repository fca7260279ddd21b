"""type_compatible: which source column types load into which target types unchanged (no database)."""

from __future__ import annotations

import pytest

from dbsync.compare import type_compatible


@pytest.mark.parametrize("source, target", [
    ("integer", "integer"),
    ("smallint", "integer"), ("smallint", "bigint"), ("integer", "bigint"),  # widening
    ("smallint", "numeric"), ("integer", "numeric"), ("bigint", "numeric"),
    ("character varying(20)", "character varying(20)"),
    ("character varying(20)", "character varying(21)"), ("character varying(20)", "character varying(200)"),
    ("character varying(20)", "character varying"), ("character varying(20)", "text"),
    ("character varying", "text"), ("text", "text"),
    ("numeric(10,2)", "numeric"),
    ("timestamp with time zone", "timestamp with time zone"), ("jsonb", "jsonb"),
])
def test_loads_unchanged(source, target):
    assert type_compatible(source, target) is True


@pytest.mark.parametrize("source, target", [
    ("bigint", "integer"), ("integer", "smallint"), ("bigint", "smallint"),  # narrowing
    ("numeric", "integer"), ("numeric", "bigint"),
    ("character varying(21)", "character varying(20)"),  # a shorter limit
    ("character varying", "character varying(20)"), ("text", "character varying(255)"),
    ("text", "character varying"), ("character varying(20)", "character(20)"),
    ("numeric", "numeric(10,2)"), ("numeric(12,2)", "numeric(10,2)"),  # typmods other than varchar's: exact only
    ("integer", "text"), ("text", "integer"), ("json", "jsonb"), ("jsonb", "json"),
    ("timestamp without time zone", "timestamp with time zone"),
])
def test_refused(source, target):
    assert type_compatible(source, target) is False


def test_varchar_lengths_compare_as_numbers_not_text():
    assert type_compatible("character varying(9)", "character varying(10)") is True
    assert type_compatible("character varying(10)", "character varying(9)") is False
