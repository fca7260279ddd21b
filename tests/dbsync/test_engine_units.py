"""Fast unit tests of the engine's pure parts (no database): the fragments' lexer, the rules
parser, the strategies' type arithmetic, the key-range arithmetic and the foreign-key order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dbsync.masking import strategies
from dbsync.masking.fragments import FragmentError, check_expression
from dbsync.masking.rules import RulesError, load_rules, parse_rules
from dbsync.sync.apply import components, cyclic
from dbsync.sync.ranges import RANGE_ROWS, range_shift

# -- the fragments' lexer ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["lower(email)", "'a;b -- c'", "$$x;y$$", "$t$ ) ; $t$", '"we;ird" || \'x\'',
                                  "E'it\\'s'", "coalesce(a, (b))", "md5(id::text)"])
def test_one_expression_passes_the_lexer(text):
    check_expression(text)


@pytest.mark.parametrize(("text", "why"), [
    ("true) TO STDOUT; COMMIT", "closes more than it opened"), ("1; DROP TABLE t", "statement separator"),
    ("x -- hide the rest", "comment"), ("x /* hide */", "comment"), ("(x", "unclosed"),
    ("'open", "unterminated string"), ('"open', "unterminated quoted identifier"),
    ("$a$ never closed", "unterminated dollar-quoted"), ("\\! rm", "backslash"), ("   ", "empty"),
])
def test_anything_else_is_refused_with_its_reason(text, why):
    with pytest.raises(FragmentError, match=why):
        check_expression(text)


# -- the rules parser ----------------------------------------------------------------------------

def test_a_rules_file_parses_into_rules():
    rules = parse_rules({"tables": {"public.users": {"columns": {"email": "email", "note": None,
                                                                 "v": {"value": 3}}},
                                    "public.log": {"rows": "none"}}}, origin="t")
    users = rules.tables["public.users"]
    assert [users.columns[c].strategy for c in ("email", "note", "v")] == ["email", "null", "value"]
    assert rules.tables["public.log"].copy_rows is False and rules.keyed


def test_every_problem_of_shape_is_listed_in_one_line():
    with pytest.raises(RulesError) as caught:
        parse_rules({"tables": {"users": {}, "public.t": {"columns": {"c": "shred"}, "rows": "none",
                                                          "where": "x > 1", "extra": 1}}}, origin="r")
    text = str(caught.value)
    assert "\n" not in text
    for part in ("must be schema.table", "unknown strategy 'shred'", "exclude each other", "unknown key 'extra'"):
        assert part in text


def test_a_key_given_twice_is_an_error_not_a_dropped_rule(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("tables:\n  public.u:\n    columns:\n      email: email\n      email: keep\n")
    with pytest.raises(RulesError, match="given twice"):
        load_rules(path)


# -- the strategies' type arithmetic ---------------------------------------------------------------

@pytest.mark.parametrize(("column_type", "length", "text"), [
    ("character varying(40)", 40, True), ("character(8)", 8, True), ("text", None, True),
    ("public.citext", None, True), ("integer", None, False), ("bytea", None, False)])
def test_types_and_their_lengths(column_type, length, text):
    assert strategies.type_length(column_type) == length and strategies.is_text(column_type) is text


def test_the_email_strategy_fits_what_it_says():
    assert strategies.OUTPUT_LENGTH["email"] == len("user-") + strategies.EMAIL_HEX + len("@example.com")


# -- key ranges ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("low", "high", "estimate"), [(1, 1_000_000, 1_000_000), (1, 1_000_000, -1),
                                                       (1, 10_000_000, 1_000_000), (5, 5, 1)])
def test_ranges_hold_about_range_rows_keys(low, high, estimate):
    shift = range_shift(low, high, estimate)
    rows = estimate if estimate > 0 else high - low + 1
    per_range = rows / ((high - low + 1) / 2 ** shift)
    assert RANGE_ROWS / 2 <= per_range <= RANGE_ROWS * 2 or (shift == 0 and per_range <= RANGE_ROWS)


# -- the foreign-key order of the apply ------------------------------------------------------------

def units(*names):
    return [SimpleNamespace(target=SimpleNamespace(key=("public", n)), label=n) for n in names]


def refs(edges):
    """child -> [parents] as catalog references."""
    return {("public", c): [SimpleNamespace(target=("public", p)) for p in ps] for c, ps in edges.items()}


def test_parents_come_first_and_a_cycle_is_one_group():
    # a_child -> p_hang -> m_left <-> m_right: the child sorts first by name, and comes last.
    found = components(units("a_child", "m_left", "m_right", "p_hang"),
                       refs({"a_child": ["p_hang"], "p_hang": ["m_left"], "m_left": ["m_right"],
                             "m_right": ["m_left"]}))
    assert [[u.label for u in g] for g in found] == [["m_left", "m_right"], ["p_hang"], ["a_child"]]
    assert [cyclic(g, refs({"m_left": ["m_right"], "m_right": ["m_left"]})) for g in found] == [True, False, False]


def test_a_table_referencing_itself_is_cyclic_and_outside_tables_order_nothing():
    found = components(units("tree", "leaf"), refs({"tree": ["tree"], "leaf": ["tree", "elsewhere"]}))
    assert [[u.label for u in g] for g in found] == [["tree"], ["leaf"]]
    assert cyclic(found[0], refs({"tree": ["tree"]})) and not cyclic(found[1], refs({}))
