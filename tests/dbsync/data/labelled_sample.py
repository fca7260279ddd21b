"""How tests/dbsync/data/labelled_columns.csv and labelled_tables.csv were made (run by hand, not
by the tests): real applications' schemas, kept outside the repository (their licences are their
applications'), loaded into a scratch server and read with dbsync's own catalog.

    .venv/bin/python -m tests.dbsync.data.labelled_sample convert APP path/to/schema.rb
    .venv/bin/python -m tests.dbsync.data.labelled_sample facts > /tmp/facts.csv

`convert` turns a Rails db/schema.rb into SQL (tables, column types, primary and foreign keys: all
the gate reads) as DBSYNC_SCHEMA_DIR/APP/structure.sql. `facts` prints every column of every schema
with the catalog facts the gate uses; the sample (a seeded random draw per schema, plus every
column a gate flags, plus every column of the tables about people) was labelled by hand from it.
Only names and types are committed, never a schema file.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import psycopg2

from tests.support import realschema

_TYPES = {"string": "character varying", "text": "text", "integer": "integer", "bigint": "bigint",
          "boolean": "boolean", "datetime": "timestamp", "timestamp": "timestamp", "timestamptz": "timestamptz",
          "date": "date", "decimal": "numeric", "float": "double precision", "binary": "bytea", "json": "json",
          "jsonb": "jsonb", "uuid": "uuid", "inet": "inet", "citext": "text", "time": "time", "enum": "text"}
_TABLE = re.compile(r'^\s*create_table "(?P<name>[^"]+)"(?P<opts>.*) do \|t\|$')
_COLUMN = re.compile(r'^\s*t\.(?P<type>\w+) "(?P<name>[^"]+)"(?P<opts>.*)$')
_FK = re.compile(r'^\s*add_foreign_key "(?P<child>[^"]+)", "(?P<parent>[^"]+)"(?P<opts>.*)$')


def _singular(word: str) -> str:
    for plural, single in (("ies", "y"), ("sses", "ss"), ("ses", "s"), ("s", "")):
        if word.endswith(plural):
            return word[: -len(plural)] + single
    return word


def _column_type(kind: str, opts: str) -> str:
    if kind == "virtual":
        kind = re.search(r"type: :(\w+)", opts).group(1)
    typ = _TYPES.get(kind, "text")
    limit = re.search(r"limit: (\d+)", opts)
    if kind == "integer" and limit:
        typ = {"2": "smallint", "8": "bigint"}.get(limit.group(1), "integer")
    elif kind == "string" and limit:
        typ = f"character varying({limit.group(1)})"
    return typ + ("[]" if "array: true" in opts else "")


def convert(schema_rb: str) -> str:
    """CREATE TABLE and ALTER TABLE … FOREIGN KEY statements for a Rails schema.rb."""
    out, table, fks = [], None, []
    for line in schema_rb.splitlines():
        if m := _TABLE.match(line):
            opts = m.group("opts")
            pk = re.search(r'primary_key: (\[[^]]*]|"[^"]+")', opts)
            id_type = re.search(r"id: :(\w+)", opts)
            table = {"name": m.group("name"), "columns": [], "pk": None}
            if pk:
                table["pk"] = re.findall(r'"([^"]+)"', pk.group(1))
            if "id: false" not in opts and not (pk and pk.group(1).startswith("[")):
                kind = id_type.group(1) if id_type else "bigint"
                name = table["pk"][0] if table["pk"] else "id"
                default = "gen_random_uuid()" if kind == "uuid" else None
                table["columns"].append((name, {"uuid": "uuid", "integer": "serial", "string": "text"}.get(
                    kind, "bigserial"), default))
                table["pk"] = [name]
        elif table and (m := _COLUMN.match(line)) and m.group("type") != "index":
            table["columns"].append((m.group("name"), _column_type(m.group("type"), m.group("opts")), None))
        elif table and line.strip() == "end":
            cols = [f'"{n}" {t}' + (f" DEFAULT {d}" if d else "") for n, t, d in table["columns"]]
            if table["pk"]:
                cols.append("PRIMARY KEY (" + ", ".join(f'"{c}"' for c in table["pk"]) + ")")
            out.append(f'CREATE TABLE "{table["name"]}" (\n    ' + ",\n    ".join(cols) + "\n);")
            table = None
        elif m := _FK.match(line):
            column = re.search(r'column: "([^"]+)"', m.group("opts"))
            target = re.search(r'primary_key: "([^"]+)"', m.group("opts"))
            fks.append(f'ALTER TABLE "{m.group("child")}" ADD FOREIGN KEY '
                       f'("{column.group(1) if column else _singular(m.group("parent")) + "_id"}")'
                       f' REFERENCES "{m.group("parent")}" ("{target.group(1) if target else "id"}");')
    return "\n\n".join(out + fks) + "\n"


def facts() -> None:
    """Every column of every schema: app, table, column, type, foreign key target."""
    writer = csv.writer(sys.stdout)
    writer.writerow(["app", "table", "column", "type", "fk_target", "table_columns"])
    with realschema.roomy_server() as server:
        for path in realschema.available_schemas():
            app = path.parent.name
            dsn = realschema.create_database(server, app.replace("-", "_"))
            realschema.load_schema(dsn, path)
            conn = psycopg2.connect(dsn)
            try:
                _write_facts(conn, app, writer)
            finally:
                conn.close()


def _write_facts(conn, app: str, writer) -> None:
    from dbsync.catalog import read_catalog

    catalog = read_catalog(conn)
    for key, table in sorted(catalog.tables.items()):
        if table.is_partition:
            continue
        keys = catalog.keys.get(key)
        targets = {c: ref.target[1] for ref in (keys.references if keys else []) for c in ref.columns}
        names = " ".join(table.columns)
        for name, col in table.columns.items():
            writer.writerow([app, table.name, name, col.type, targets.get(name, ""), names])


if __name__ == "__main__":
    if sys.argv[1] == "convert":
        app, source = sys.argv[2], Path(sys.argv[3])
        into = realschema.schema_dir() / app
        into.mkdir(parents=True, exist_ok=True)
        (into / "structure.sql").write_text(convert(source.read_text()))
    else:
        facts()
