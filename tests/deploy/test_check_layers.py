"""`make lint` holds backend/ to its layers (scripts/check_layers.py): the tree as it is passes, and
an import up a layer, or a cycle, fails it."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.support.paths import ROOT

CHECK = [sys.executable, str(ROOT / "scripts" / "check_layers.py")]


def run(root) -> subprocess.CompletedProcess:
    return subprocess.run([*CHECK, str(root)], capture_output=True, text=True, timeout=60)


def test_the_backend_keeps_its_layers():
    r = run(ROOT / "backend")
    assert r.returncode == 0, r.stderr


def copy_of_backend(tmp_path):
    root = tmp_path / "backend"
    shutil.copytree(ROOT / "backend", root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_engine_reading_the_settings_fails_the_check(tmp_path):
    root = copy_of_backend(tmp_path)
    guards = root / "dbsync" / "sync" / "guards.py"
    guards.write_text(guards.read_text() + "\n\ndef allowlist():\n    from dbsync.settings import SyncSettings\n\n"
                      "    return SyncSettings.load().sync_target_allowlist\n")
    r = run(root)
    assert r.returncode == 1
    assert "dbsync.sync.guards (sync) imports dbsync.settings (settings), a layer above it" in r.stderr


def test_a_cycle_fails_the_check(tmp_path):
    root = copy_of_backend(tmp_path)
    plan = root / "dbsync" / "sync" / "units.py"
    plan.write_text(plan.read_text() + "\n\ndef later():\n    from dbsync.sync import phases\n\n    return phases\n")
    r = run(root)
    assert r.returncode == 1 and "import cycle: " in r.stderr and "dbsync.sync.units" in r.stderr
