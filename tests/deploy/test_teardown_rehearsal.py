"""Rehearse `make teardown-admin-route` on a copy of the tree, and its refusals.

The copy is what git would check out (tracked and not-ignored files). After the teardown it must
read as if the route had never existed: no file names it, only marked lines went, the app imports
and serves without it even with a key configured, a few API tests and the template checks pass,
and ruff is clean. Kept small on purpose: it proves the removal, it is not a second test run.

At the end, the script's pieces on their own (marker removal, the plan), on small texts and a
small made-up tree.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from tests.support.rehearsal import SCRIPT, copy_tree, run_teardown, snapshot, tree_files

# pristine (a copy of the tree) and torn (a copy after the teardown) are fixtures of
# tests/deploy/conftest.py.

BIN = Path(sys.executable).parent
DELETED = {
    "backend/app/api/v1/admin.py",
    "tests/support/admin_route.py",
    SCRIPT,
    "tests/deploy/test_teardown_rehearsal.py",
    "tests/support/rehearsal.py",
    ".github/workflows/remove-admin-route.yml",
    "docs/admin-route.md",
}
ROUTE_PATH = "/api/v1/admin/reset-sequences"
# Written independently of the script's own list, so that a gap in one shows in the other.
TRACES = re.compile(r"admin-route|app\.api\.v1\.admin\b|v1/admin\.py|/admin/reset-sequences|ADMIN_API_KEY"
                    r"|ADMIN_ALLOW_PROD|AdminApiKey|X-API-Key|teardown_admin_route|test_admin_route"
                    r"|(?i:\badmin route\b)|\bSTAGE\b|\bStage\b")
# A marker of either kind: a block's first line, or a single line that ends with one.
MARKED = re.compile(rb"admin-route:begin|# admin-route$|<!-- admin-route -->$", re.M)


# -- the rehearsal ------------------------------------------------------------------------------

def test_only_the_route_and_its_tooling_are_gone(pristine, torn):
    dst, _ = torn
    before, after = snapshot(pristine), snapshot(dst)
    deleted = set(before) - set(after)
    route_tests = {f for f in before if re.fullmatch(r"tests/api/test_admin_route[^/]*\.py", f)}
    assert route_tests, "the route's tests should exist before the teardown"
    assert deleted == DELETED | route_tests
    assert not set(after) - set(before), "the teardown created files"
    changed = {f for f in after if after[f] != before[f]}
    marked = {f for f, data in before.items() if f not in deleted and MARKED.search(data)}
    assert {"backend/app/api/main.py", "template.yaml", "README.md", "Makefile", "localdev/demo.py"} <= marked
    assert changed == marked
    for f in changed:
        # Only whole lines went (the marked ones, and blank lines they left doubled).
        old, new = before[f].decode().splitlines(), after[f].decode().splitlines()
        it = iter(old)
        assert all(line in it for line in new), f"{f}: lines were edited, not only removed"
        assert TRACES.search(before[f].decode())


def test_no_file_names_the_route_afterwards(torn):
    dst, _ = torn
    leftovers = [f"{f}:{n}: {line.strip()}" for f, data in snapshot(dst).items()
                 for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1) if TRACES.search(line)]
    assert leftovers == []
    assert "teardown-admin-route" not in (dst / "Makefile").read_text()
    assert not (dst / "scripts" / "teardown_admin_route.py").exists()


PROBE = """
import json, os, sys
from fastapi.testclient import TestClient
import app, app.main
client = TestClient(app.main.create_app())
r = client.post(%r, headers={"X-API-Key": "k" * 32 if sys.argv[1] == "good" else "wrong"}, json={})
print(json.dumps({"app": app.__file__, "status": r.status_code,
                  "paths": sorted(client.get("/openapi.json").json()["paths"])}))
"""


def probe(tree: Path, key: str) -> dict:
    """Build the app of `tree` in a fresh interpreter with an admin key configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "DATABASE_URL", "DB_"))}
    env.update(PYTHONPATH=str(tree / "backend"), ADMIN_API_KEY="k" * 32, STAGE="staging",
               DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", AWS_DEFAULT_REGION="eu-west-1")
    proc = subprocess.run([sys.executable, "-c", PROBE % ROUTE_PATH, key], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(result["app"]).is_relative_to(tree / "backend"), result["app"]
    return result


def test_route_is_gone_even_with_a_key_configured(pristine, torn):
    before = probe(pristine, "wrong")
    assert before["status"] == 401 and ROUTE_PATH in before["paths"], "the probe must see the route before"
    after = probe(torn[0], "good")
    assert after["status"] == 404
    assert not [p for p in after["paths"] if "admin" in p]
    assert "/api/v1/books" in after["paths"] and "/health" in after["paths"]


def test_api_and_template_tests_pass_afterwards(torn, pg_server):
    dst, _ = torn
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "PYTEST_"))}
    env["TEST_DATABASE_URL"] = pg_server.dsn("postgres")
    tests = ["tests/api/test_lambda.py", "tests/deploy/test_template.py", "tests/deploy/test_workflows.py"]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=dst,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", proc.stdout) and " failed" not in proc.stdout


@pytest.mark.pg  # the demo starts its own embedded server
def test_demo_runs_without_the_route(torn):
    dst, _ = torn
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "DATABASE_URL", "SOURCE_", "TARGET_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(dst), str(dst / "backend")])
    proc = subprocess.run([sys.executable, "-m", "localdev.demo"], cwd=dst, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "All steps behaved as expected." in proc.stdout
    assert "admin" not in proc.stdout.lower()


def test_ruff_is_clean_afterwards(torn):
    # The paths `make lint` checks, read from the torn Makefile itself.
    lint = re.search(r"^\t\$\(VENV\)/bin/ruff check (.+)$", (torn[0] / "Makefile").read_text(), re.M)
    assert lint, "the Makefile's lint target is not where this test expects it"
    proc = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", *lint.group(1).split()], cwd=torn[0],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_script_itself_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- refusals: non-zero, a message naming the problem, and the tree untouched -------------------

def _break_end_marker(root: Path) -> None:
    path = root / "template.yaml"
    head, _, tail = path.read_text().rpartition("# admin-route:end\n")
    path.write_text(head + tail)


def _remove_route_file(root: Path) -> None:
    (root / "backend/app/api/v1/admin.py").unlink()


def _unmark_the_mount(root: Path) -> None:
    path = root / "backend/app/api/main.py"
    path.write_text(path.read_text().replace("  # admin-route\n", "\n"))


def _unmarked_mention(root: Path) -> None:
    path = root / "backend/app/core/settings.py"
    path.write_text(path.read_text() + "\n# see ADMIN_API_KEY\n")


def _nested_marker(root: Path) -> None:
    path = root / "Makefile"
    path.write_text(path.read_text().replace("# admin-route:begin\n", "# admin-route:begin\n# admin-route:begin\n"))


@pytest.mark.parametrize(("damage", "message"), [
    (_break_end_marker, "never closed"),
    (_remove_route_file, "backend/app/api/v1/admin.py: missing"),
    (_unmark_the_mount, "backend/app/api/main.py: no admin-route block found"),
    (_unmarked_mention, "backend/app/core/settings.py"),
    (_nested_marker, "inside the block"),
])
def test_refuses_and_changes_nothing(pristine, tmp_path, damage, message):
    root = copy_tree(pristine, tree_files(pristine), tmp_path / "tree")
    damage(root)
    before = snapshot(root)
    proc = run_teardown(root)
    assert proc.returncode == 1
    assert "nothing was changed" in proc.stderr and message in proc.stderr, proc.stderr
    assert snapshot(root) == before


def test_dry_run_changes_nothing(pristine, tmp_path):
    root = copy_tree(pristine, tree_files(pristine), tmp_path / "tree")
    before = snapshot(root)
    proc = subprocess.run([sys.executable, str(root / SCRIPT), "--dry-run"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "delete  backend/app/api/v1/admin.py" in proc.stdout
    assert snapshot(root) == before


# -- the script's pieces, without a copy of the tree -----------------------------------------------

def _load_script():
    spec = importlib.util.spec_from_file_location("teardown_script", ROOT / SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


teardown = _load_script()


def removed(path: str, text: str) -> tuple[str, int, list[str]]:
    problems: list[str] = []
    new, count = teardown.remove_marked(path, text, problems)
    return new, count, problems


def test_markers_are_html_comments_in_markdown_and_hash_comments_elsewhere():
    assert teardown.markers_for("docs/api.md") == (
        "<!-- admin-route:begin -->", "<!-- admin-route:end -->", "<!-- admin-route -->")
    for path in ("Makefile", "template.yaml", "backend/app/main.py", "README.rst"):
        assert teardown.markers_for(path) == ("# admin-route:begin", "# admin-route:end", "# admin-route")


def test_a_block_goes_with_its_markers_and_the_blank_lines_stay_as_they_were():
    text = ("a = 1\n\n\n# admin-route:begin\ndef f():\n    pass\n# admin-route:end\n\n\n"
            "b = 2\n    # admin-route:begin\n    c = 3\n    # admin-route:end\nd = 4\n")
    assert removed("x.py", text) == ("a = 1\n\n\nb = 2\nd = 4\n", 2, [])


def test_blank_lines_keep_the_larger_of_the_two_runs_that_meet():
    assert removed("x.py", "a\n\n# admin-route:begin\nx\n# admin-route:end\n\n\nb\n")[0] == "a\n\n\nb\n"
    assert removed("x.py", "a\n\n\n# admin-route:begin\nx\n# admin-route:end\nb\n")[0] == "a\n\n\nb\n"


def test_at_the_start_or_the_end_of_a_file_no_blank_run_is_left():
    assert removed("x.py", "# admin-route:begin\nx\n# admin-route:end\n\nb\n") == ("b\n", 1, [])
    assert removed("x.py", "a\n\n# admin-route:begin\nx\n# admin-route:end\n") == ("a\n", 1, [])
    assert removed("x.py", "a\n\n# admin-route:begin\nx\n# admin-route:end\n\n\n") == ("a\n", 1, [])


def test_a_line_ending_in_the_single_marker_goes_alone():
    text = 'KEEP = 1\nADMIN = "x"  # admin-route\n  - item  # admin-route\n# admin-route\nlast\n'
    # A line that is nothing but the marker is not a marked line (it would name the route after).
    assert removed("x.yaml", text) == ("KEEP = 1\n# admin-route\nlast\n", 2, [])


def test_markdown_uses_its_own_markers_only():
    text = ("# Title\n\n<!-- admin-route:begin -->\n## The route\n\ntext\n<!-- admin-route:end -->\n\n"
            "| a | b |\n| route | x | <!-- admin-route -->\n| kept | y |\n# admin-route:begin\n")
    assert removed("doc.md", text) == ("# Title\n\n| a | b |\n| kept | y |\n# admin-route:begin\n", 2, [])


@pytest.mark.parametrize("text, problem", [
    ("a\n# admin-route:end\n", "x.py:2: '# admin-route:end' without a '# admin-route:begin' before it"),
    ("a\n# admin-route:begin\nb\n", "x.py:2: '# admin-route:begin' is never closed by '# admin-route:end'"),
    ("# admin-route:begin\na\n  # admin-route:begin\n# admin-route:end\n",
     "x.py:3: '# admin-route:begin' inside the block opened at line 1"),
    ("# admin-route:begin\n# admin-route:end\n# admin-route:end\n",
     "x.py:3: '# admin-route:end' without a '# admin-route:begin' before it"),
])
def test_unbalanced_markers_are_a_problem_and_the_text_is_left_whole(text, problem):
    assert removed("x.py", text) == (text, 0, [problem])


ROUTE_TEST_FILES = ("tests/api/test_admin_route.py", "tests/api/test_admin_route_http.py")


def made_up_tree(root: Path) -> Path:
    """The smallest tree the script accepts: every file it deletes, a marked block or line in each
    file that must have one (the router's mount among them), and an unrelated file."""
    for rel in DELETED | set(ROUTE_TEST_FILES):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("# the admin route's, or its tooling's\n")
    files = {
        "template.yaml": "Resources:\n  Api: {}\n  # admin-route:begin\n  AdminKey: {}\n  # admin-route:end\n",
        "README.md": "# Books\n\n<!-- admin-route:begin -->\nThe admin route.\n<!-- admin-route:end -->\n\nEnd.\n",
        "Makefile": "test:\n\tpytest\n\n# admin-route:begin\nteardown-admin-route:\n\tpython3 x\n# admin-route:end\n",
        "localdev/demo.py": "print('demo')\nprint('repair via the admin route')  # admin-route\n",
        "backend/app/api/main.py": "from app.api.v1 import admin, books  # admin-route\n"
                                   "from app.api.v1 import books\n\n"
                                   "router.include_router(books.router)\n"
                                   "router.include_router(admin.router)  # admin-route\n",
        "backend/app/main.py": "app = None\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_plan_deletes_the_listed_files_and_edits_the_marked_ones(tmp_path):
    root = made_up_tree(tmp_path)
    before = snapshot(root)
    deletions, edits, problems = teardown.plan(root)
    assert problems == []
    assert sorted(deletions) == sorted(DELETED | set(ROUTE_TEST_FILES))
    assert edits == {
        "template.yaml": "Resources:\n  Api: {}\n",
        "README.md": "# Books\n\nEnd.\n",
        "Makefile": "test:\n\tpytest\n",
        "localdev/demo.py": "print('demo')\n",
        "backend/app/api/main.py": "from app.api.v1 import books\n\nrouter.include_router(books.router)\n",
    }
    assert snapshot(root) == before  # planning reads only


def test_the_plan_lists_every_problem_at_once(tmp_path):
    root = made_up_tree(tmp_path)
    (root / "backend/app/api/v1/admin.py").unlink()
    for rel in ROUTE_TEST_FILES:
        (root / rel).unlink()
    (root / "localdev/demo.py").write_text("print('demo')\n")
    (root / "backend/app/main.py").write_text("app = None\n# set ADMIN_API_KEY to mount it\n")
    (root / "docs/notes.md").write_text("<!-- admin-route:begin -->\nnever closed\n")
    deletions, edits, problems = teardown.plan(root)
    assert problems == [
        "backend/app/api/v1/admin.py: missing (expected as part of the admin route or its teardown)",
        "tests/api/test_admin_route*.py: no test file of the route found",
        "backend/app/main.py:2: still names the route after the teardown ('ADMIN_API_KEY'); mark it or reword it:"
        " # set ADMIN_API_KEY to mount it",
        "docs/notes.md:1: '<!-- admin-route:begin -->' is never closed by '<!-- admin-route:end -->'",
        "localdev/demo.py: no admin-route block found (expected one)",
    ]


def test_the_routes_setting_left_unmarked_is_a_leftover(tmp_path):
    root = made_up_tree(tmp_path)
    (root / "backend/app/main.py").write_text("app = None\nSTAGE = 'x'\nstage = 'fine'\n")
    (root / "template.yaml").write_text("Parameters:\n  Stage: {}  # admin-route\n  Other: {}\n  Staged: {}\n")
    assert teardown.plan(root)[2] == [
        "backend/app/main.py:2: still names the route after the teardown ('\\\\bSTAGE\\\\b'); mark it or reword it:"
        " STAGE = 'x'"]
