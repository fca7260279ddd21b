"""`make demo` end to end: it must tell the whole story and exit 0 (it exits 1 when a step misbehaves)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT


def run_demo(tree: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "DATABASE_URL", "SOURCE_", "TARGET_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "backend")])
    return subprocess.run([sys.executable, "-m", "localdev.demo"], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.pg  # the demo starts its own embedded server
def test_make_demo_tells_the_story():
    proc = run_demo(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    order = ['null value in column "id" of relation "books"', "The permanent fix", "the new book's id is",
             "db-sync check-sequences finds staging clean", "Summary", "All steps behaved as expected."]
    at = 0
    for text in order:  # in this order
        at = out.find(text, at)
        assert at != -1, f"{text!r} missing or out of order:\n{out}"
    # admin-route:begin
    assert "repair staging through the temporary admin route" in out and "a wrong key is refused" in out
    # admin-route:end
