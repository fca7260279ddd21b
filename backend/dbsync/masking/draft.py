"""`db-sync rules init`: a rules file drafted from a database's catalog, for a person to review.

Every column the gate flags gets a line: the first strategy of its kind that fits its type, its
length and its keys (what the sync itself would accept: dbsync.masking.binding), and a comment
saying what flagged it. Never `keep`: saying a flagged column holds nothing personal is a
person's call. Where nothing fits, `null` if the column takes NULL, else `TODO`, which the rules
file refuses (check-rules fails) until someone writes a strategy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dbsync.catalog import Catalog, TableKey, read_catalog
from dbsync.connect import DEFAULT_LOCK_TIMEOUT
from dbsync.masking import binding, gate
from dbsync.masking.rules import TODO, ColumnRule
from dbsync.sessions import abandon, close, describe, open_session

# What to try for each kind of personal data (gate's kinds), best first.
PREFERRED: dict[str, tuple[str, ...]] = {
    "contact details": ("phone",),  # emails are told apart by name (EMAIL_WORDS)
    "people's names": ("name", "redact"),
    "profile text": ("redact",),
    "postal addresses": ("redact",),
    "credentials and tokens": ("hash",),
    "IP addresses": (),
    "birth dates": ("year", "redact"),
    "government and tax ids": ("hash", "redact"),
    "payment data": ("hash", "redact"),
    "location": (),
    "account identifiers": ("hash",),
    "personal_data pattern": ("redact", "hash"),
}
EMAIL_WORDS = frozenset({"email", "emails", "mail", "e_mail", "address", "addresses"})
WHY = {
    "email": "a fake address per value: unique, and the same in every table",
    "phone": "a number in a range reserved for fiction",
    "name": "a readable fake name",
    "redact": "same length, all x",
    "hash": "a digest per value: unique, and the same in every table",
    "year": "only the year is kept",
    "null": "nothing fits its type and length; it takes NULL",
}


@dataclass
class Drafted:
    table: str  # schema.table, as the rules file keys it
    column: str
    strategy: str  # a strategy name, or TODO
    comment: str


def _candidates(kind: str, column: str, flagged_by: str) -> tuple[str, ...]:
    if kind == "contact details" and (set(gate.words(column)) & EMAIL_WORDS or "email" in flagged_by):
        return ("email", "hash")
    return PREFERRED.get(kind, ("redact",))


def _referenced(catalog: Catalog, key: TableKey, column: str) -> str | None:
    """The foreign key that points at the column: masking it alone would break the reference."""
    for child, keys in sorted(catalog.keys.items()):
        for ref in keys.references:
            if ref.target == key and column in ref.target_columns:
                return f"{ref.name} of {catalog.tables[child].label}"
    return None


def _choose(catalog: Catalog, key: TableKey, column: str, kind: str, flagged_by: str) -> tuple[str, str]:
    """(strategy or TODO, why)."""
    table = catalog.tables[key]
    col, keys = table.columns[column], catalog.keys.get(key)
    if keys and column in keys.primary or (key, column) in catalog.fed_columns():
        return TODO, "it is a key: masking it would break what it identifies; decide (`keep` if it holds none)"
    if ref := _referenced(catalog, key, column):
        return TODO, f"foreign key {ref} references it: mask both sides the same way, or keep"
    unique = bool(keys and column in keys.unique)
    misfits = []
    for strategy in _candidates(kind, column, flagged_by):
        problem = binding._fit_problem(column, ColumnRule(strategy), col.type, col.not_null)
        if problem is None and unique and strategy not in binding.INJECTIVE:
            problem = f"{strategy} on a unique column would make duplicates"
        if problem is None:
            return strategy, WHY[strategy] + ("; unique index: values stay distinct" if unique else "")
        misfits.append(problem.removeprefix(f"{column}: "))
    if not col.not_null:
        return "null", (f"{'; '.join(misfits)}: it takes NULL" if misfits else WHY["null"])
    return TODO, (("; ".join(misfits) + "; " if misfits else "") + f"NOT NULL {col.type}: write a strategy")


def draft(catalog: Catalog) -> list[Drafted]:
    """A line for each column the gate flags in the top-level tables, in table and column order."""
    keys = {t.key for t in catalog.tables.values() if not t.is_partition}
    found = []
    for u in binding._uncovered(None, catalog, keys):
        key = next(k for k in keys if catalog.tables[k].label == u.table)
        strategy, why = _choose(catalog, key, u.column, u.kind, u.flagged_by)
        found.append(Drafted(f"{key[0]}.{key[1]}", u.column, strategy, f"flagged: {u.flagged_by} — {why}"))
    return found


def draft_source(source, *, lock_timeout: str = DEFAULT_LOCK_TIMEOUT) -> tuple[list[Drafted], str]:
    """The drafted lines and the rules file's text for the database at `source` (a DSN, or
    settings with .connect), read in a read-only session."""
    conn = open_session(source, "source", options="-c default_transaction_read_only=on", lock_timeout=lock_timeout)
    try:
        catalog = read_catalog(conn)
    finally:
        abandon(conn)
        close(conn)
    lines = draft(catalog)
    return lines, render(lines, describe(source))


# Plain YAML scalars; anything else is written as a JSON string, which YAML reads the same.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_YAML_WORDS = frozenset({"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"})


def _scalar(text: str) -> str:
    return text if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS else json.dumps(text)


def render(lines: list[Drafted], origin: str) -> str:
    """The rules file's text, with a comment on every line."""
    out = [f"# Masking rules drafted by `db-sync rules init` from {origin}: review every line",
           "# (docs/masking.md). Each column below is one the gate flags as personal data; `keep`",
           "# records a review that it holds none. TODO lines fail `check-rules` until you decide.",
           "tables:" if lines else "tables: {}"]
    table = None
    for d in lines:
        if d.table != table:
            table = d.table
            out += [f"  {_scalar(d.table)}:", "    columns:"]
        value = "null" if d.strategy == "null" else d.strategy
        out.append(f"      {_scalar(d.column)}: {value}  # {d.comment}")
    return "\n".join(out) + "\n"
