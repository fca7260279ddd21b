"""docs/configuration.md names every setting the code and the template read; the docs' links resolve.

The settings are collected from the source, not from a list kept here: `os.environ.get("X")`,
`os.environ["X"]`, `"X" in os.environ`, `os.getenv("X")`, `env.get("X")` on a mapping standing for
the environment, a lookup through a parameter with a constant default (`os.environ.get(env)` with
`env="DATABASE_URL"`), and the fields of pydantic `BaseSettings` classes — subclasses of subclasses
too, with the fields they inherit (dbsync.settings: `SourceDatabaseSettings(DatabaseSettings)`),
upper-cased after the class's `env_prefix` (its own or its nearest base's). A lookup the collector
cannot resolve fails the test rather than being skipped.
Then every `Environment.Variables` name of the template's functions, and the stack parameter that
sets it. No database needed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DOC = ROOT / "docs" / "configuration.md"
TEMPLATE = ROOT / "template.yaml"
SKIP_PARTS = {"__pycache__", ".venv", ".git"}


def python_files() -> list[Path]:
    """The code that reads settings: backend/, localdev/, benchmarks/ and the tests' conftest files."""
    files = [p for d in ("backend", "localdev", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    files += (ROOT / "tests").rglob("conftest.py")
    return sorted(p for p in files if not SKIP_PARTS & set(p.parts) and not any(
        part.endswith(".egg-info") for part in p.parts))


# -- the collector ----------------------------------------------------------------------------------

def _is_environ(node: ast.AST) -> bool:
    """`os.environ` or a bare `environ`."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
            and node.value.id == "os") or (isinstance(node, ast.Name) and node.id == "environ")


def _const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing_functions(node: ast.AST, parents: dict) -> list[ast.FunctionDef]:
    """The functions around `node`, innermost first."""
    out = []
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out.append(node)
    return out


def _param_default(func: ast.FunctionDef, name: str) -> tuple[bool, ast.AST | None]:
    """(is `name` a parameter of `func`, its default node or None)."""
    args = func.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for arg, default in [*zip(positional, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults,
                                                                        strict=True)]:
        if arg.arg == name:
            return True, default
    return False, None


def _calls_to(trees: dict[Path, ast.AST], name: str) -> list[ast.Call]:
    """Every call of a function called `name` (`name(...)` or `x.name(...)`) in the scanned code."""
    return [node for tree in trees.values() for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == name)
        or (isinstance(node.func, ast.Attribute) and node.func.attr == name))]


def _argument_values(trees, func: ast.FunctionDef, param: str, within: ast.AST | None = None) -> set[str]:
    """The constant strings `param` of `func` takes: its default and what its callers pass."""
    values = set()
    _, default = _param_default(func, param)
    if _const_str(default) is not None:
        values.add(_const_str(default))
    positional = [a.arg for a in func.args.posonlyargs + func.args.args]
    calls = _calls_to({None: within}, func.name) if within is not None else _calls_to(trees, func.name)
    for call in calls:
        for kw in call.keywords:
            if kw.arg == param and _const_str(kw.value) is not None:
                values.add(_const_str(kw.value))
        if param in positional and positional.index(param) < len(call.args):
            value = _const_str(call.args[positional.index(param)])
            if value is not None:
                values.add(value)
    return values


def _resolve_name(trees, node: ast.Name, parents) -> set[str]:
    """`os.environ.get(env)`: the constants the parameter `env` of the enclosing function takes."""
    for func in _enclosing_functions(node, parents):
        is_param, _ = _param_default(func, node.id)
        if is_param:
            return _argument_values(trees, func, node.id)
    return set()


def _env_prefix(node: ast.ClassDef) -> str | None:
    """`model_config = SettingsConfigDict(env_prefix="SOURCE_")` in the class body, else None."""
    for stmt in node.body:
        if (isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["model_config"]
                and isinstance(stmt.value, ast.Call)):
            for kw in stmt.value.keywords:
                if kw.arg == "env_prefix" and _const_str(kw.value) is not None:
                    return _const_str(kw.value)
    return None


def _own_fields(node: ast.ClassDef) -> list[str]:
    fields = []
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            if not name.startswith("_") and name != "model_config" and "ClassVar" not in ast.unparse(stmt.annotation):
                fields.append(name)
    return fields


def _base_names(node: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else b.attr for b in node.bases if isinstance(b, ast.Name | ast.Attribute)]


def settings_classes(trees: dict[Path, ast.AST]) -> dict[str, tuple[Path, ast.ClassDef, set[str]]]:
    """Every pydantic BaseSettings subclass in the scanned code, directly or through classes found
    there: {name: (file, class, its variables)}. A class's variables are its own fields and its
    bases' (as pydantic inherits them), each upper-cased after the class's `env_prefix` (its own,
    else the nearest base's)."""
    classes: dict[str, list[tuple[Path, ast.ClassDef]]] = {}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append((path, node))

    def resolve(name: str, seen: tuple[str, ...] = ()) -> tuple[bool, list[str], str | None]:
        """(is a settings class, its field names, its prefix)."""
        if name == "BaseSettings":
            return True, [], None
        found = classes.get(name, [])
        if len(found) != 1 or name in seen:
            return False, [], None  # unknown here (a library class), or ambiguous
        _, node = found[0]
        is_settings, fields, prefix = False, [], _env_prefix(node)
        for base in _base_names(node):
            base_is, base_fields, base_prefix = resolve(base, (*seen, name))
            if base_is:
                is_settings = True
                fields += [f for f in base_fields if f not in fields]
                prefix = base_prefix if prefix is None else prefix
        fields += [f for f in _own_fields(node) if f not in fields]
        return is_settings, fields, prefix

    out = {}
    for name, found in classes.items():
        is_settings, fields, prefix = resolve(name)
        if is_settings:
            path, node = found[0]
            out[name] = (path, node, {f"{prefix or ''}{f}".upper() for f in fields})
    return out


def collect_code_settings(files: list[Path] | None = None) -> tuple[dict[str, set[str]], list[str]]:
    """({variable: {files reading it}}, [lookups that could not be resolved])."""
    files = python_files() if files is None else files
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for path in files}
    found: dict[str, set[str]] = {}
    unresolved: list[str] = []

    def add(names: set[str], path: Path, node: ast.AST) -> None:
        where = path.relative_to(ROOT).as_posix()
        if not names:
            unresolved.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        for name in names:
            found.setdefault(name, set()).add(where)

    for path, _, names in settings_classes(trees).values():
        for name in names:  # a base with no fields of its own (EnvSettings) reads nothing itself
            found.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
    for path, tree in trees.items():
        parents = _parents(tree)
        for node in ast.walk(tree):
            key = None
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                if isinstance(func, ast.Attribute) and func.attr in ("get", "setdefault") and _is_environ(func.value):
                    key = node.args[0]
                elif isinstance(func, ast.Attribute) and func.attr == "getenv" and isinstance(func.value, ast.Name) \
                        and func.value.id == "os":
                    key = node.args[0]
                elif (isinstance(func, ast.Attribute) and func.attr == "get"
                      and getattr(func.value, "id", "") in ("env", "environ")):
                    key = node.args[0]  # a mapping that stands for the environment
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
                key = node.slice
            elif (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn)
                  and _is_environ(node.comparators[0])):
                key = node.left
            if key is None:
                continue
            if _const_str(key) is not None:
                add({_const_str(key)}, path, node)
            elif isinstance(key, ast.Name):
                add(_resolve_name(trees, key, parents), path, node)
            else:
                add(set(), path, node)
    return found, unresolved


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that reads `!Ref X`, `!If [...]`, `!GetAtt a.b`, … as plain `{"!Ref": X}` data."""


def _tagged(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"!{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _tagged)


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)  # noqa: S506


def _refs(value) -> set[str]:
    """Every `!Ref X` inside a variable's value (directly or under `!If`), pseudo-parameters aside."""
    if isinstance(value, dict):
        return {v for k, v in value.items() if k == "!Ref" and isinstance(v, str) and not v.startswith("AWS::")} | {
            r for v in value.values() for r in _refs(v)}
    if isinstance(value, list):
        return {r for v in value for r in _refs(v)}
    return set()


def collect_template_settings(template: dict | None = None) -> dict[str, set[str]]:
    """{variable: {stack parameters setting it}} over the functions' and Globals' Environment.Variables."""
    template = load_template() if template is None else template
    parameters = set(template.get("Parameters") or {})
    blocks = [((template.get("Globals") or {}).get("Function") or {})]
    blocks += [(r.get("Properties") or {}) for r in (template.get("Resources") or {}).values()
               if r.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function")]
    found: dict[str, set[str]] = {}
    for props in blocks:
        variables = ((props.get("Environment") or {}).get("Variables")) or {}
        for name, value in variables.items():
            found.setdefault(name, set()).update(_refs(value) & parameters)
    # The Fargate task's containers: Environment is a list of {Name, Value}, some under !If.
    for res in (template.get("Resources") or {}).values():
        if res.get("Type") != "AWS::ECS::TaskDefinition":
            continue
        for container in (res.get("Properties") or {}).get("ContainerDefinitions") or []:
            for entry in container.get("Environment") or []:
                for option in entry["!If"][1:] if "!If" in entry else [entry]:
                    if isinstance(option, dict) and "Name" in option:
                        found.setdefault(option["Name"], set()).update(_refs(option.get("Value")) & parameters)
    return found


def named_in(text: str, name: str) -> bool:
    """`name` as a whole word: DB_HOST is not named by SOURCE_DB_HOST."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


# -- the configuration page -------------------------------------------------------------------------

def test_the_collectors_find_known_settings():
    found, unresolved = collect_code_settings()
    assert unresolved == [], "extend the collector for these lookups:\n" + "\n".join(unresolved)
    # Each found through a different form: a pydantic field, one inherited under a prefix, a constant.
    assert {"DATABASE_URL", "SOURCE_DATABASE_URL", "SYNC_TARGET_ALLOWLIST", "LOCK_TIMEOUT"} <= set(found)
    assert {"TARGET_DB_PORT", "DB_SECRET_ARN", "TEST_DATABASE_URL"} <= set(found)
    assert "backend/app/core/settings.py" in found["DB_PORT"]  # app's Settings inherits DatabaseSettings's fields
    assert not {"SOURCE_LOCK_TIMEOUT", "SETTINGS_DB_PORT"} & set(found)


def test_the_class_collector_follows_bases_and_prefixes(tmp_path):
    code = tmp_path / "settings.py"
    code.write_text(
        "from pydantic_settings import BaseSettings, SettingsConfigDict\n"
        "class Base(BaseSettings):\n    model_config = SettingsConfigDict(env_ignore_empty=True)\n"
        "class Db(Base):\n    url: str | None = None\n    role: ClassVar[str] = 'x'\n"
        "class Source(Db):\n    model_config = SettingsConfigDict(env_prefix='SOURCE_')\n"
        "class Shared(Base):\n    lock_timeout: str = '10s'\n"
        "class Api(Shared, Db):\n    pass\n"
        "class NotSettings:\n    field: int = 0\n")
    tree = ast.parse(code.read_text())
    classes = {name: names for name, (_, _, names) in settings_classes({code: tree}).items()}
    assert classes == {"Base": set(), "Db": {"URL"}, "Source": {"SOURCE_URL"}, "Shared": {"LOCK_TIMEOUT"},
                       "Api": {"LOCK_TIMEOUT", "URL"}}
    template = collect_template_settings()
    assert {"SYNC_TARGET_ALLOWLIST", "LOCK_TIMEOUT", "SOURCE_DB_SECRET_ARN"} <= set(template)
    assert template["LOCK_TIMEOUT"] == {"LockTimeout"}
    assert template["DB_HOST"] == {"DbHost"}  # under !If
    assert template["SYNC_MAX_SECONDS"] == {"SyncMaxSeconds"} and template["SOURCE_DB_HOST"] == {"SourceDbHost"}
    assert template["SYNC_METRICS"] == set()  # the Fargate task's, a constant


def test_named_in_matches_whole_names_only():
    assert named_in("| `SOURCE_DB_HOST` |", "SOURCE_DB_HOST")
    assert not named_in("| `SOURCE_DB_HOST` |", "DB_HOST")
    assert not named_in("`LOCK_TIMEOUTS`", "LOCK_TIMEOUT")


def test_every_setting_the_code_reads_is_documented():
    text = CONFIG_DOC.read_text(encoding="utf-8")
    found, _ = collect_code_settings()
    missing = {name: sorted(where) for name, where in found.items() if not named_in(text, name)}
    assert missing == {}, f"read by the code but not named in {CONFIG_DOC.relative_to(ROOT)}: {missing}"


def test_every_template_variable_and_its_parameter_is_documented():
    text = CONFIG_DOC.read_text(encoding="utf-8")
    missing = sorted({name for name, params in collect_template_settings().items()
                      for n in (name, *params) if not named_in(text, n)} |
                     {p for params in collect_template_settings().values() for p in params if not named_in(text, p)})
    assert missing == [], f"set by template.yaml but not named in {CONFIG_DOC.relative_to(ROOT)}: {missing}"


# -- links ------------------------------------------------------------------------------------------

def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)


def relative_links(text: str) -> list[str]:
    text = _INLINE_CODE.sub("", _FENCE.sub("", text))
    links = _INLINE_LINK.findall(text) + _REFERENCE.findall(text)
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link, re.I)]


def github_anchors(text: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _FENCE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_relative_links_helpers():
    text = "[a](docs/x.md) [b](https://e.org) `[c](no.md)` [d](#top) [e](y.md#part)\n\n[f]: ../z.md\n"
    assert relative_links(text) == ["docs/x.md", "#top", "y.md#part", "../z.md"]
    assert "the-sync-the-db_sync-lambda-and-db-sync-sync" in github_anchors(
        "# The sync: the db_sync Lambda and `db-sync sync`\n")


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    broken = []
    for link in relative_links(text):
        path, _, anchor = link.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in github_anchors(target.read_text(encoding="utf-8")):
            broken.append(f"{link}: no heading '#{anchor}' in {target.relative_to(ROOT).as_posix()}")
    assert broken == [], f"{doc.relative_to(ROOT)}: {broken}"
