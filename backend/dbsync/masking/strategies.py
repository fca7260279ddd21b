"""Each strategy as a SQL expression over the row, evaluated by the server that reads the rows.

Built-in functions only (prod need not have pgcrypto). The keyed strategies derive everything
from one digest, sha256(key ‖ strategy ‖ ':' ‖ value::text): the same value with the same key
gives the same output in every table, on every run and on every server (sha256 is stable, unlike
hashtext), and another key gives other values. The key itself never appears in SQL text: it is
a setting of the session (see dbsync.masking.key), read with current_setting().
NULL stays NULL in every strategy but `value` and `sql`.
"""

from __future__ import annotations

import re

from psycopg2 import sql

from dbsync import sqltext
from dbsync.masking.rules import KEY_SETTING, ColumnRule

# Reserved for documentation (RFC 2606): no mail to it reaches anyone.
EMAIL_DOMAIN = "example.com"
EMAIL_HEX = 32  # 128 bits of the digest: collisions are negligible (about 1 in 10^20 for a billion rows)
# Ofcom's drama range: 020 7946 0000–0999 is reserved for fiction, so no real phone rings.
PHONE_PREFIX = "+44 20 7946 0"
FIRST_NAMES = ("Ada", "Alan", "Alice", "Amara", "Ana", "Ben", "Carla", "Chen", "Dara", "David", "Eli", "Emma",
               "Farah", "Grace", "Hana", "Ivan", "Jonas", "Kai", "Lena", "Leo", "Maya", "Mei", "Nia", "Omar",
               "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Vera", "Yusuf")
LAST_NAMES = ("Abbott", "Bauer", "Castro", "Diaz", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
              "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Park", "Quinn", "Rossi", "Silva", "Tanaka",
              "Usman", "Varga", "Weber", "Xu", "Yilmaz", "Zhang", "Murphy", "Nguyen", "Olsen", "Petrov",
              "Reyes", "Svensson")

# Longest output of each text strategy, for the planner's fit check (None: the input's length).
OUTPUT_LENGTH = {
    "email": len("user-") + EMAIL_HEX + 1 + len(EMAIL_DOMAIN),
    "name": max(map(len, FIRST_NAMES)) + 1 + max(map(len, LAST_NAMES)),
    "phone": len(PHONE_PREFIX) + 3,
    "hash": 64,
    "redact": None,
}
TEXT_TYPES = re.compile(r"^(text|character varying(\(\d+\))?|character\(\d+\)|(\w+\.)?citext|name)$")
HASH_INTEGERS = {"smallint": 2**15, "integer": 2**31, "bigint": None}
HASHABLE = ("text-like", "bytea", "uuid", *HASH_INTEGERS)
DATE_STRATEGIES = frozenset({"year", "date_shift"})
DATE_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")


def date_type(column_type: str) -> str:
    """timestamp(3) with time zone → timestamp with time zone: the date strategies ignore precision."""
    return re.sub(r"\(\d+\)", "", column_type)


def type_length(column_type: str) -> int | None:
    """The declared length of character varying(n) / character(n); None when unbounded."""
    m = re.search(r"\((\d+)\)$", column_type)
    return int(m.group(1)) if m else None


def is_text(column_type: str) -> bool:
    return bool(TEXT_TYPES.match(column_type))


def _key() -> sql.Composable:
    return sql.SQL("decode(current_setting({}), 'hex')").format(sql.Literal(KEY_SETTING))


def _digest(strategy: str, column: sql.Composable) -> sql.Composable:
    return sql.SQL("sha256({key} || convert_to({tag} || ({col})::text, 'UTF8'))").format(
        key=_key(), tag=sql.Literal(f"{strategy}:"), col=column)


def _pick(names: tuple[str, ...], digest: sql.Composable, byte: int) -> sql.Composable:
    return sql.SQL("({})[get_byte({}, {}) % {} + 1]").format(
        sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(sql.Literal(n) for n in names)), digest,
        sql.Literal(byte), sql.Literal(len(names)))


def _hash(column: sql.Composable, column_type: str) -> sql.Composable:
    d = _digest("hash", column)
    if column_type == "bytea":
        return d
    if column_type == "uuid":
        return sql.SQL("encode(substring({} FROM 1 FOR 16), 'hex')::uuid").format(d)
    if column_type in HASH_INTEGERS:
        wide = sql.SQL("('x' || left(encode({}, 'hex'), 16))::bit(64)::bigint").format(d)
        modulus = HASH_INTEGERS[column_type]
        return wide if modulus is None else sql.SQL("({} % {})").format(wide, sql.Literal(modulus))
    return sql.SQL("encode({}, 'hex')").format(d)


def _utc(column: sql.Composable, column_type: str) -> sql.Composable:
    """A date or timestamp as a timestamp without time zone, read in UTC: immutable, and the
    same whatever the session's TimeZone."""
    if column_type == "timestamp with time zone":
        return sql.SQL("({} AT TIME ZONE 'UTC')").format(column)
    return column


def _from_utc(expr: sql.Composable, column_type: str) -> sql.Composable:
    return sql.SQL("({} AT TIME ZONE 'UTC')").format(expr) if column_type == "timestamp with time zone" else expr


def _year(column: sql.Composable, column_type: str) -> sql.Composable:
    """January 1st of the value's year (midnight UTC for a timestamp)."""
    if column_type == "date":
        return sql.SQL("make_date(extract(year FROM {})::int, 1, 1)").format(column)
    return _from_utc(sql.SQL("date_trunc('year', {})").format(_utc(column, column_type)), column_type)


def _date_shift(column: sql.Composable, column_type: str, days: int) -> sql.Composable:
    """The value moved by a keyed whole number of days within ±days, the same for the same day.
    The digest reads the day's number (an integer), never date::text, which depends on DateStyle."""
    day = sql.SQL("({}::date - DATE '2000-01-01')").format(_utc(column, column_type))
    d = _digest("date_shift", day)
    shift = sql.SQL("((get_byte({d}, 0) * 256 + get_byte({d}, 1)) % {width} - {days})").format(
        d=d, width=sql.Literal(2 * days + 1), days=sql.Literal(days))
    if column_type == "date":
        return sql.SQL("({} + {})").format(column, shift)
    return _from_utc(sql.SQL("({} + {} * interval '1 day')").format(_utc(column, column_type), shift), column_type)


def email_form(value: sql.Composable) -> sql.Composable:
    """True where `value` has the form of the email strategy's every output (a LIKE, wider than
    the output: a value outside it is never one of the strategy's outputs), in the "C" collation,
    so that prod and staging judge a value alike whatever their columns' collations."""
    return sql.SQL("(({})::text COLLATE \"C\") LIKE {}").format(value, sql.Literal(f"user-%@{EMAIL_DOMAIN}"))


def expression(rule: ColumnRule, column: str, column_type: str) -> sql.Composable:
    """The value the rule gives the column, as an expression over the row, cast to its type."""
    col = sql.Identifier(column)
    s = rule.strategy
    if s == "keep":
        return col
    if s == "email":
        d = _digest("email", col)
        expr = sql.SQL("'user-' || left(encode({}, 'hex'), {}) || {}").format(
            d, sql.Literal(EMAIL_HEX), sql.Literal("@" + EMAIL_DOMAIN))
    elif s == "name":
        d = _digest("name", col)
        expr = sql.SQL("{} || ' ' || {}").format(_pick(FIRST_NAMES, d, 0), _pick(LAST_NAMES, d, 1))
    elif s == "phone":
        d = _digest("phone", col)
        expr = sql.SQL("{} || lpad(((get_byte({d}, 2) * 256 + get_byte({d}, 3)) % 1000)::text, 3, '0')").format(
            sql.Literal(PHONE_PREFIX), d=d)
    elif s == "hash":
        expr = _hash(col, column_type)
    elif s == "year":
        expr = _year(col, date_type(column_type))
    elif s == "date_shift":
        expr = _date_shift(col, date_type(column_type), rule.value)
    elif s == "redact":
        expr = sql.SQL("repeat('x', length({}))").format(col)
    elif s == "null":
        expr = sql.SQL("NULL")
    elif s == "value":
        expr = sql.Literal(rule.value)
    else:  # sql: checked to be one expression (dbsync.masking.fragments) and parsed by the server
        expr = sql.SQL("({})").format(sqltext.fragment(rule.sql))
    return sql.SQL("({})::{}").format(expr, sqltext.type_name(column_type))
