"""The rules file: which columns are masked how, which rows travel, read with yaml.safe_load.

    tables:
      public.users:
        columns:
          email: email
          name: name
      public.audit_log:
        rows: none
    personal_data:          # optional: more column-name patterns for the gate (regular expressions)
      - "^nickname$"
    not_personal:           # optional: columns the gate flags that hold none (schema.table.column,
      - public.projects.name  # or a regular expression matched against the whole of it)
    exclude:                # optional: tables the sync leaves alone, as staging's own (shell-style
      - "audit.*"           # globs on schema.table, as --exclude-table takes them)

Everything about the file's shape is checked here, with the file's name; what the rules say
about a database (tables and columns that exist, types that fit) is checked by
dbsync.masking.binding against its catalog.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from dbsync.errors import DbSyncError
from dbsync.masking.fragments import FragmentError, check_expression

# Strategies a column can name, in the docs' order; `null` is written as YAML's null.
STRATEGIES = ("email", "name", "phone", "hash", "redact", "year", "null", "keep", "value", "sql", "date_shift")
NAMED = STRATEGIES[:8]  # written as a bare name; the others as {value: X}, {sql: EXPR}, {date_shift: DAYS}
KEYED = frozenset({"email", "name", "phone", "hash", "date_shift"})
# What `rules init` writes where no strategy fits: refused until a person decides.
TODO = "TODO"
MAX_SHIFT_DAYS = 3650
_TABLE_KEYS = {"columns", "rows", "where"}
# The masking key reaches SQL only through this setting; a fragment must never read it.
KEY_SETTING = "dbsync.mask_key"


@dataclass(frozen=True)
class ColumnRule:
    strategy: str
    value: object = None  # for `value`
    sql: str | None = None  # for `sql`

    def describe(self) -> str:
        if self.strategy == "value":
            return f"value {self.value!r}"
        if self.strategy == "sql":
            return f"sql {self.sql}"
        if self.strategy == "date_shift":
            return f"date_shift ±{self.value} days"
        return self.strategy


@dataclass
class TableRule:
    columns: dict[str, ColumnRule] = field(default_factory=dict)
    copy_rows: bool = True  # False: `rows: none`
    where: str | None = None


@dataclass
class Rules:
    tables: dict[str, TableRule]  # keyed as --table takes them: schema.table
    personal_data: list[re.Pattern] = field(default_factory=list)
    origin: str = "rules"  # the file's name, for messages
    not_personal: list[re.Pattern] = field(default_factory=list)  # matched against schema.table.column
    exclude: list[str] = field(default_factory=list)  # globs on schema.table: not synced (dbsync.sync.drift)

    def cleared(self, schema: str, table: str, column: str) -> bool:
        """`not_personal:` says the column holds no personal data, whatever the gate reads in its name."""
        name = f"{schema}.{table}.{column}"
        return any(p.fullmatch(name) for p in self.not_personal)

    @property
    def keyed(self) -> bool:
        return any(c.strategy in KEYED for t in self.tables.values() for c in t.columns.values())


@functools.cache
def _unique_key_loader():
    """safe_load's loader, refusing a key given twice in one mapping (YAML would keep the last
    silently, dropping a rule someone wrote). Made on first use: PyYAML is imported only by a
    command that reads a rules file."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"{key!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


class RulesError(DbSyncError):
    """A rules file that cannot be used: one line naming the file and what is wrong."""


def _column_rule(where: str, raw) -> tuple[ColumnRule | None, str | None]:
    if raw is None:
        return ColumnRule("null"), None
    if isinstance(raw, str):
        if raw == TODO:
            return None, f"{where}: TODO, left by rules init where no strategy fits: decide one (see its comment)"
        if raw == "date_shift":
            return None, f"{where}: date_shift needs its range in days: {{date_shift: DAYS}}"
        if raw == "null" or raw not in NAMED:
            return None, f"{where}: unknown strategy {raw!r} (one of {', '.join(s for s in NAMED if s != 'null')}," \
                         " {value: X}, {sql: EXPR}, {date_shift: DAYS}, or null)"
        return ColumnRule(raw), None
    if isinstance(raw, dict) and len(raw) == 1 and "date_shift" in raw:
        days = raw["date_shift"]
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_SHIFT_DAYS:
            return None, f"{where}: date_shift takes a whole number of days from 1 to {MAX_SHIFT_DAYS}, not {days!r}"
        return ColumnRule("date_shift", value=days), None
    if isinstance(raw, dict) and len(raw) == 1 and "value" in raw:
        if isinstance(raw["value"], dict | list):
            return None, f"{where}: value must be a scalar"
        return ColumnRule("value", value=raw["value"]), None
    if isinstance(raw, dict) and len(raw) == 1 and "sql" in raw:
        return _fragment(where, "sql", raw["sql"], lambda text: ColumnRule("sql", sql=text))
    return None, (f"{where}: a strategy is a name, null, {{value: X}}, {{sql: EXPR}} or {{date_shift: DAYS}},"
                  f" not {raw!r}")


def _fragment(where: str, kind: str, text, make):
    if not isinstance(text, str):
        return None, f"{where}: {kind} must be a string"
    try:
        check_expression(text)
    except FragmentError as exc:
        return None, f"{where}: {kind} {text!r} is not one expression: it has {exc}"
    # The plain spelling, refused here in words a reader understands; every other way to the key
    # (another spelling, pg_settings) is refused by the immutability check (dbsync.masking.immutable).
    if KEY_SETTING in text.lower():
        return None, f"{where}: {kind} must not read the masking key"
    return make(text), None


def _table_rule(name: str, raw) -> tuple[TableRule, list[str]]:
    problems: list[str] = []
    rule = TableRule()
    if not isinstance(raw, dict):
        return rule, [f"{name}: expected columns, rows or where"]
    for key in sorted(set(raw) - _TABLE_KEYS):
        problems.append(f"{name}: unknown key {key!r} (columns, rows, where)")
    columns = raw.get("columns") or {}
    if not isinstance(columns, dict):
        problems.append(f"{name}: columns must map column names to strategies")
        columns = {}
    for column, strategy in columns.items():
        made, problem = _column_rule(f"{name}.{column}", strategy)
        if problem:
            problems.append(problem)
        else:
            rule.columns[str(column)] = made
    rows = raw.get("rows", "all")
    if rows not in ("all", "none"):
        problems.append(f"{name}: rows is 'none' (copy no rows) or 'all', not {rows!r}")
    rule.copy_rows = rows != "none"
    if "where" in raw:
        if not rule.copy_rows:
            problems.append(f"{name}: rows: none and where: exclude each other")
        rule.where, problem = _fragment(name, "where", raw["where"], lambda text: text)
        if problem:
            problems.append(problem)
    return rule, problems


def parse_rules(data, origin: str = "rules") -> Rules:
    """Rules from the file's parsed YAML; RulesError listing every problem of shape."""
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"tables", "personal_data", "not_personal", "exclude"}:
        raise RulesError(f"{origin}: expected a mapping with `tables` (and optionally `personal_data`,"
                         " `not_personal`, `exclude`)")
    tables_raw = data.get("tables") or {}
    if not isinstance(tables_raw, dict):
        raise RulesError(f"{origin}: `tables` must map schema.table names to their rules")
    problems: list[str] = []
    tables: dict[str, TableRule] = {}
    for name, raw in tables_raw.items():
        if not isinstance(name, str) or name.count(".") < 1:
            problems.append(f"table key {name!r} must be schema.table")
            continue
        tables[name], found = _table_rule(name, raw)
        problems += found
    patterns = _patterns(data, "personal_data", re.IGNORECASE, problems)
    cleared = _patterns(data, "not_personal", 0, problems)
    exclude = data.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(p, str) and p.strip() for p in exclude):
        problems.append("exclude must be a list of schema.table patterns")
        exclude = []
    if problems:
        raise RulesError(f"{origin}: " + "; ".join(problems))
    return Rules(tables, patterns, origin, cleared, exclude)


def _patterns(data: dict, key: str, flags: int, problems: list[str]) -> list[re.Pattern]:
    raw = data.get(key) or []
    if not isinstance(raw, list):
        problems.append(f"{key} must be a list")
        return []
    out = []
    for text in raw:
        try:
            out.append(re.compile(str(text), flags))
        except re.error as exc:
            problems.append(f"{key} pattern {text!r} is not a regular expression ({exc})")
    return out


def load_rules(path: str | Path) -> Rules:
    """The rules file at `path`; RulesError (one line: the file, the line, what is wrong)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"cannot read rules file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    import yaml

    try:
        data = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RulesError(f"rules file {path}{where}: {problem}") from None
    return parse_rules(data, origin=f"rules file {path}")
