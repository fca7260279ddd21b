"""Copies of the tree for rehearsing the teardown: what git would check out, and snapshots of it.
(Part of the teardown's tooling: deleted with it.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = "scripts/teardown_admin_route.py"
SKIP = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}


def tree_files(root: Path) -> list[str]:
    if (root / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True).stdout.decode()
        return sorted(f for f in set(out.split("\0")) if f and (root / f).is_file())
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP and not d.endswith(".egg-info")]
        files += [Path(dirpath, f).relative_to(root).as_posix() for f in filenames]
    return sorted(files)


def snapshot(root: Path) -> dict[str, bytes]:
    return {f: (root / f).read_bytes() for f in tree_files(root)}


def copy_tree(src: Path, files: list[str], dst: Path) -> Path:
    for f in files:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / f, dst / f)
    return dst


def run_teardown(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / SCRIPT)], capture_output=True, text=True, timeout=120)
