"""Remove the temporary admin route, then this tooling, leaving a tree with no trace of either.

Run by `make teardown-admin-route` (and by the remove-admin-route workflow once staging checks
clean). Standard library only: it runs before any virtualenv exists.

What goes:
  * whole files: the route (backend/app/api/v1/admin.py), its tests (tests/api/test_admin_route*.py)
    and their helpers (tests/support/admin_route.py), and this tooling (this script,
    tests/deploy/test_teardown_rehearsal.py with tests/support/rehearsal.py, the removal workflow);
  * the route's marked import and mount lines in backend/app/api/main.py (`# admin-route`), and
    with the route its settings: STAGE (the stack's `Stage` parameter) is read by nothing else;
  * the route's documentation page, docs/admin-route.md (the whole file);
  * every marked block, in any text file of the tree: the lines from `# admin-route:begin` to
    `# admin-route:end` (in Markdown `<!-- admin-route:begin -->` … `<!-- admin-route:end -->`),
    markers included; and any single line ending in `# admin-route` (Markdown: `<!-- admin-route -->`,
    for a table row, which an HTML comment line would break).

It plans everything first and writes nothing unless the whole plan holds: every expected piece
present, every marker balanced, and no remaining file still naming the route. Otherwise it exits
with status 1 and a list of what is wrong, the tree untouched.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROUTE_FILE = "backend/app/api/v1/admin.py"
ROUTE_DOC = "docs/admin-route.md"
ROUTE_TESTS = "tests/api/test_admin_route*.py"
ROUTE_TEST_HELPERS = "tests/support/admin_route.py"
# Where the route is imported and mounted: lines marked `# admin-route`, like any marked line.
ROUTER_INDEX = "backend/app/api/main.py"
TOOLING = (
    "scripts/teardown_admin_route.py",
    "tests/deploy/test_teardown_rehearsal.py",
    "tests/support/rehearsal.py",
    ".github/workflows/remove-admin-route.yml",
)
# Files that must carry at least one marked block: a missing one means the tree is not the one
# this script was written for, and removing the rest would leave a half-removed route.
MUST_BE_MARKED = (ROUTER_INDEX, "template.yaml", "README.md", "Makefile", "localdev/demo.py")

# Nothing left in the tree may name the route or its tooling (case-sensitive, except the prose).
LEFTOVERS = [re.compile(p) for p in (
    r"admin-route",
    r"app\.api\.v1\.admin\b",
    r"api/v1/admin\.py",
    r"/admin/reset-sequences",
    r"ADMIN_API_KEY",
    r"ADMIN_ALLOW_PROD",
    r"AdminApiKey",
    r"X-API-Key",
    r"teardown_admin_route",
    r"test_admin_route",
    r"(?i)\badmin route\b",
    r"\bSTAGE\b",  # the route's setting, and the stack parameter that sets it
    r"\bStage\b",
)]

SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache",
             ".aws-sam", "build", "dist", "node_modules"}


def markers_for(path: str) -> tuple[str, str, str]:
    if path.endswith(".md"):
        return "<!-- admin-route:begin -->", "<!-- admin-route:end -->", "<!-- admin-route -->"
    return "# admin-route:begin", "# admin-route:end", "# admin-route"


def text_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            data = path.read_bytes()
            if b"\0" in data:
                continue
            try:
                yield path.relative_to(root).as_posix(), data.decode("utf-8")
            except UnicodeDecodeError:
                continue


def _squeeze_blank_run(out: list[str], following: list[str]) -> int:
    """After a removal: keep as many blank lines as the larger of the two runs that met
    (two functions apart stay two lines apart); returns how many following lines to skip."""
    before = 0
    while before < len(out) and out[len(out) - 1 - before].strip() == "":
        before += 1
    after = 0
    while after < len(following) and following[after].strip() == "":
        after += 1
    if not out:
        return after  # nothing above: the file starts after the blank run
    if after == len(following):
        del out[len(out) - before:]
        return after  # nothing below: no trailing blank lines
    return min(before, after)


def remove_marked(path: str, text: str, problems: list[str]) -> tuple[str, int]:
    """The text without its marked blocks and lines; the number of blocks and lines removed."""
    begin, end, single = markers_for(path)
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    removed = 0
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped == end:
            problems.append(f"{path}:{i + 1}: '{end}' without a '{begin}' before it")
            return text, 0
        if stripped == begin:
            j = i + 1
            while j < len(lines) and lines[j].strip() not in (begin, end):
                j += 1
            if j == len(lines):
                problems.append(f"{path}:{i + 1}: '{begin}' is never closed by '{end}'")
                return text, 0
            if lines[j].strip() == begin:
                problems.append(f"{path}:{j + 1}: '{begin}' inside the block opened at line {i + 1}")
                return text, 0
            removed += 1
            i = j + 1
            i += _squeeze_blank_run(out, lines[i:])
            continue
        if lines[i].rstrip().endswith(single) and stripped != single:
            removed += 1
            i += 1
            continue
        out.append(lines[i])
        i += 1
    return "".join(out), removed


def plan(root: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """(files to delete, {file: new text}, problems). Reads only."""
    problems: list[str] = []
    deletions: list[str] = []
    for rel in (ROUTE_FILE, ROUTE_DOC, ROUTE_TEST_HELPERS, *TOOLING):
        if (root / rel).is_file():
            deletions.append(rel)
        else:
            problems.append(f"{rel}: missing (expected as part of the admin route or its teardown)")
    route_tests = sorted(p.relative_to(root).as_posix() for p in root.glob(ROUTE_TESTS))
    if not route_tests:
        problems.append(f"{ROUTE_TESTS}: no test file of the route found")
    deletions += route_tests

    edits: dict[str, str] = {}
    marked: set[str] = set()
    gone = set(deletions)
    for rel, text in text_files(root):
        if rel in gone:
            continue
        known = len(problems)
        new, count = remove_marked(rel, text, problems)
        if len(problems) > known:
            continue  # its markers are broken: what else it names would only repeat the point
        if count:
            marked.add(rel)
        if new != text:
            edits[rel] = new
        for n, line in enumerate(new.splitlines(), 1):
            for pattern in LEFTOVERS:
                if pattern.search(line):
                    problems.append(f"{rel}:{n}: still names the route after the teardown "
                                    f"({pattern.pattern!r}); mark it or reword it: {line.strip()[:90]}")
                    break
    for rel in MUST_BE_MARKED:
        if rel not in marked:
            problems.append(f"{rel}: no admin-route block found (expected one)")
    return deletions, edits, problems


def apply(root: Path, deletions: list[str], edits: dict[str, str]) -> None:
    # Every new text is written beside its file first; only then are files swapped and deleted,
    # so a failure while writing leaves the tree as it was.
    staged: list[tuple[str, Path]] = []
    try:
        for rel, text in edits.items():
            target = root / rel
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            os.chmod(tmp, target.stat().st_mode & 0o7777)
            staged.append((rel, Path(tmp)))
    except BaseException:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    for rel, tmp in staged:
        os.replace(tmp, root / rel)
    for rel in deletions:
        (root / rel).unlink()
        parent = (root / rel).parent
        while parent != root and parent.is_dir() and not any(
                p for p in parent.iterdir() if p.name != "__pycache__"):
            for cache in parent.glob("__pycache__"):
                for f in cache.iterdir():
                    f.unlink()
                cache.rmdir()
            parent.rmdir()
            parent = parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the repository to edit (default: the one holding this script)")
    parser.add_argument("--dry-run", action="store_true", help="show what would go, change nothing")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    deletions, edits, problems = plan(root)
    if problems:
        print("teardown refused, nothing was changed:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    for rel in deletions:
        print(f"delete  {rel}")
    for rel in sorted(edits):
        print(f"edit    {rel}")
    if args.dry_run:
        print("(dry run: nothing changed)")
        return 0
    apply(root, deletions, edits)
    print(f"admin route removed: {len(deletions)} files deleted, {len(edits)} edited")
    return 0


if __name__ == "__main__":
    sys.exit(main())
